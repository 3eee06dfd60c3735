import { mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The top self-time functions of a V8 CPU profile (node --cpu-prof), the profile's own format
 * read without a tool: what to tune first is whatever the bridge spends its own time in.
 */

interface ProfileNode {
  readonly id: number;
  readonly callFrame: {
    readonly functionName: string;
    readonly url: string;
    readonly lineNumber: number;
  };
}

export interface CpuProfile {
  readonly nodes: readonly ProfileNode[];
  readonly samples: readonly number[];
  /** µs between consecutive samples; the first is from the profile's start. */
  readonly timeDeltas: readonly number[];
}

export interface HotFunction {
  /** `name (file:line)`, the file relative to the project. */
  readonly name: string;
  readonly selfMicros: number;
  /** Of all sampled time, idle and GC included. */
  readonly share: number;
}

const ROOT = fileURLToPath(new URL('../', import.meta.url));

function where(frame: ProfileNode['callFrame']): string {
  const name = frame.functionName === '' ? '(anonymous)' : frame.functionName;
  if (frame.url === '') return name;
  const file = frame.url.startsWith('file://') ? relative(ROOT, fileURLToPath(frame.url)) : frame.url;
  return `${name} (${file}:${frame.lineNumber + 1})`;
}

/** Self time per function (summed over the nodes of the same function), highest first. */
export function hotFunctions(profile: CpuProfile, top: number): HotFunction[] {
  const byNode = new Map(profile.nodes.map((node) => [node.id, node]));
  const self = new Map<string, number>();
  let total = 0;
  profile.samples.forEach((id, i) => {
    // A sample's time is the gap to the next one; the last sample has none after it.
    const micros = profile.timeDeltas[i + 1] ?? 0;
    total += micros;
    const node = byNode.get(id);
    if (node === undefined) return;
    const key = where(node.callFrame);
    self.set(key, (self.get(key) ?? 0) + micros);
  });
  return [...self.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, top)
    .map(([name, selfMicros]) => ({ name, selfMicros, share: total > 0 ? selfMicros / total : 0 }));
}

/** A fresh directory for one bridge process's profile. */
export function profileDir(base: string, run: string): string {
  const dir = join(base, run);
  mkdirSync(dir, { recursive: true });
  return dir;
}

/** The hot functions of the newest profile in `dir`, or undefined when there is none. */
export function readHotFunctions(
  dir: string,
  top = 15,
): { file: string; functions: HotFunction[] } | undefined {
  const files = readdirSync(dir)
    .filter((name) => name.endsWith('.cpuprofile'))
    .sort();
  const newest = files.at(-1);
  if (newest === undefined) return undefined;
  const file = join(dir, newest);
  return { file, functions: hotFunctions(JSON.parse(readFileSync(file, 'utf8')) as CpuProfile, top) };
}
