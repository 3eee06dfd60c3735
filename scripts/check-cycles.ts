import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

/**
 * Fails when the modules under src/ import each other in a cycle. A cycle makes the flow of the
 * code unreadable (which module comes first?) and, in ESM, can leave a binding undefined at
 * load time. Only relative imports count; `import type` counts too, since a type cycle is the
 * same tangle. Usage: node --import tsx scripts/check-cycles.ts [dir]
 */

const IMPORT = /^\s*(?:import|export)\s[^'"]*?from\s*['"](\.[^'"]+)['"]|^\s*import\s*['"](\.[^'"]+)['"]/gm;

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return sources(path);
    return entry.name.endsWith('.ts') ? [path] : [];
  });
}

export function importGraph(files: readonly string[]): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  for (const file of files) {
    const text = readFileSync(file, 'utf8');
    const targets = [...text.matchAll(IMPORT)].map((m) => resolve(dirname(file), m[1] ?? m[2] ?? ''));
    graph.set(resolve(file), targets);
  }
  return graph;
}

/** Every cycle found by a depth-first walk, each as the list of modules it passes through. */
export function findCycles(graph: ReadonlyMap<string, readonly string[]>): string[][] {
  const state = new Map<string, 'open' | 'done'>();
  const stack: string[] = [];
  const cycles: string[][] = [];
  const visit = (node: string): void => {
    state.set(node, 'open');
    stack.push(node);
    for (const next of graph.get(node) ?? []) {
      if (!graph.has(next)) continue;
      const seen = state.get(next);
      if (seen === 'open') cycles.push([...stack.slice(stack.indexOf(next)), next]);
      else if (seen === undefined) visit(next);
    }
    stack.pop();
    state.set(node, 'done');
  };
  for (const node of graph.keys()) if (!state.has(node)) visit(node);
  return cycles;
}

function main(): void {
  const root = resolve(process.argv[2] ?? 'src');
  const cycles = findCycles(importGraph(sources(root)));
  for (const cycle of cycles)
    console.error(`import cycle: ${cycle.map((f) => relative(root, f)).join(' → ')}`);
  if (cycles.length > 0) process.exit(1);
  console.log(`no import cycles under ${relative(process.cwd(), root) || '.'}`);
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) main();
