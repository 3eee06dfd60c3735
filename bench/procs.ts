import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';

/**
 * CPU time and memory of processes from /proc (Linux only). The benchmark runs every party on
 * one small machine, so where the CPU goes explains the numbers as much as the numbers do.
 */

const CLOCK_TICKS = readClockTicks();
const MICROS_PER_TICK = 1_000_000 / CLOCK_TICKS;

function readClockTicks(): number {
  try {
    const ticks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());
    return Number.isInteger(ticks) && ticks > 0 ? ticks : 100;
  } catch {
    return 100;
  }
}

export interface ProcCpu {
  /** utime + stime of the process itself, in µs. */
  readonly selfMicros: number;
  /** cutime + cstime: children it has waited for, in µs. */
  readonly reapedMicros: number;
  readonly ppid: number;
}

/** undefined when the process is gone. */
export function procCpu(pid: number): ProcCpu | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // The command name (field 2) may contain spaces and parentheses; fields resume after the last ')'.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  const field = (n: number): number => Number(fields[n - 3]);
  return {
    selfMicros: (field(14) + field(15)) * MICROS_PER_TICK,
    reapedMicros: (field(16) + field(17)) * MICROS_PER_TICK,
    ppid: field(4),
  };
}

export interface ProcMemory {
  readonly rssBytes: number;
  /** Peak resident set size over the process's life (VmHWM). */
  readonly peakRssBytes: number;
}

export function procMemory(pid: number): ProcMemory | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return undefined;
  }
  const kib = (name: string): number =>
    Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? 0);
  return { rssBytes: kib('VmRSS') * 1024, peakRssBytes: kib('VmHWM') * 1024 };
}

/**
 * CPU of a process and all its live descendants, plus what it has reaped: for PostgreSQL the
 * postmaster reaps every backend, so backends that came and went between two readings are
 * still counted. With `include`, only the root and the children it accepts (with theirs) are
 * counted, and nothing reaped, which cannot be told apart.
 */
export function treeCpuMicros(rootPid: number, include?: (pid: number) => boolean): number {
  const children = new Map<number, number[]>();
  const cpu = new Map<number, ProcCpu>();
  for (const entry of readdirSync('/proc')) {
    const pid = Number(entry);
    if (!Number.isInteger(pid)) continue;
    const reading = procCpu(pid);
    if (reading === undefined) continue;
    cpu.set(pid, reading);
    const siblings = children.get(reading.ppid);
    if (siblings === undefined) children.set(reading.ppid, [pid]);
    else siblings.push(pid);
  }
  const root = cpu.get(rootPid);
  if (root === undefined) return 0;
  let total = include === undefined ? root.reapedMicros : 0;
  const pending = [rootPid, ...(children.get(rootPid) ?? []).filter((pid) => include?.(pid) ?? true)];
  children.delete(rootPid);
  // Bounded by the number of processes read above: each pid is visited at most once.
  for (let visited = 0; pending.length > 0 && visited <= cpu.size; visited++) {
    const pid = pending.pop() as number;
    total += cpu.get(pid)?.selfMicros ?? 0;
    pending.push(...(children.get(pid) ?? []));
  }
  return total;
}

/** PostgreSQL's shared helpers, which work for every database: counted wherever they run. */
const POSTGRES_HELPERS =
  /^(checkpointer|background writer|walwriter|autovacuum launcher|logical replication launcher)/;

/**
 * Whether a child of the postmaster works for `database`: its backends and autovacuum workers
 * name it in their process title, and the shared helpers count too. The server is shared with
 * other work on the machine, whose backends are left out.
 */
export function servesDatabase(pid: number, database: string): boolean {
  let title: string;
  try {
    title = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ').trim();
  } catch {
    return false;
  }
  return isOurPostgresProcess(title, database);
}

export function isOurPostgresProcess(title: string, database: string): boolean {
  // "postgres: [<cluster>: ]<what>", e.g. Debian's "postgres: 15/main: checkpointer".
  const what = /^postgres: (?:[^:\s]+: )?(.*)$/.exec(title)?.[1];
  if (what === undefined) return false;
  if (POSTGRES_HELPERS.test(what)) return true;
  // "<user> <database> <client> <state>", or "autovacuum worker <database>".
  const words = what.split(/\s+/);
  return words[1] === database || (words[0] === 'autovacuum' && words[2] === database);
}

export interface MachineCpu {
  /** Busy time summed over all cores, in µs. */
  readonly busyMicros: number;
  readonly totalMicros: number;
}

export function machineCpu(): MachineCpu {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '';
  const ticks = line.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal (guest time is already inside user)
  const total = ticks.slice(0, 8).reduce((sum, value) => sum + value, 0);
  const idle = (ticks[3] ?? 0) + (ticks[4] ?? 0);
  return { busyMicros: (total - idle) * MICROS_PER_TICK, totalMicros: total * MICROS_PER_TICK };
}

/**
 * The process listening on a local TCP port (e.g. the broker on 5672, the postmaster on 5432),
 * found through the socket's inode; undefined when it cannot be seen (another user, a container).
 */
export function listeningPid(port: number): number | undefined {
  const inodes = new Set<string>();
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0');
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text = '';
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const columns = line.trim().split(/\s+/);
      const LISTEN = '0A';
      if (columns[1]?.endsWith(`:${hexPort}`) && columns[3] === LISTEN && columns[9] !== undefined) {
        inodes.add(`socket:[${columns[9]}]`);
      }
    }
  }
  if (inodes.size === 0) return undefined;
  for (const entry of readdirSync('/proc')) {
    const pid = Number(entry);
    if (!Number.isInteger(pid)) continue;
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      try {
        if (inodes.has(readlinkSync(`/proc/${pid}/fd/${fd}`))) return pid;
      } catch {
        // The descriptor closed while we looked.
      }
    }
  }
  return undefined;
}
