import { machineCpu, type ProcMemory, procCpu, procMemory, servesDatabase, treeCpuMicros } from './procs.ts';

/** Parties whose CPU is measured in each scenario. */
export interface Parties {
  /** The bridge child process, while one runs. */
  readonly bridge?: number | undefined;
  readonly rpcServer?: number | undefined;
  readonly postgres?: number | undefined;
  /** The run's database: only PostgreSQL's processes serving it count (and the shared helpers). */
  readonly database?: string | undefined;
  readonly rabbitmq?: number | undefined;
}

export interface CpuUse {
  /** µs of CPU per party over the measured interval. */
  readonly bridge: number | undefined;
  /** This process: the load generators and pollers. */
  readonly harness: number;
  readonly rpcServer: number | undefined;
  readonly postgres: number | undefined;
  readonly rabbitmq: number | undefined;
  /** Everything busy on the machine, summed over cores. */
  readonly machineBusy: number;
  readonly wallMicros: number;
}

interface Snapshot {
  readonly at: number;
  readonly harness: number;
  readonly bridge: number | undefined;
  readonly rpcServer: number | undefined;
  readonly postgres: number | undefined;
  readonly rabbitmq: number | undefined;
  readonly machineBusy: number;
}

/** CPU time of every party at one instant; `since` gives the use between two snapshots. */
export class CpuProbe {
  readonly #parties: Parties;
  readonly #start: Snapshot;

  constructor(parties: Parties) {
    this.#parties = parties;
    this.#start = this.#snapshot();
  }

  since(): CpuUse {
    const end = this.#snapshot();
    const delta = (a: number | undefined, b: number | undefined): number | undefined =>
      a === undefined || b === undefined ? undefined : b - a;
    return {
      bridge: delta(this.#start.bridge, end.bridge),
      harness: end.harness - this.#start.harness,
      rpcServer: delta(this.#start.rpcServer, end.rpcServer),
      // Counting only the run's own backends, one that exited in between would subtract its CPU:
      // a negative sum is unknown, not zero.
      postgres: nonNegative(delta(this.#start.postgres, end.postgres)),
      rabbitmq: delta(this.#start.rabbitmq, end.rabbitmq),
      machineBusy: end.machineBusy - this.#start.machineBusy,
      wallMicros: (end.at - this.#start.at) * 1000,
    };
  }

  #snapshot(): Snapshot {
    const { bridge, rpcServer, postgres, rabbitmq, database } = this.#parties;
    const ours = database === undefined ? undefined : (pid: number) => servesDatabase(pid, database);
    const usage = process.cpuUsage();
    return {
      at: performance.now(),
      harness: usage.user + usage.system,
      bridge: bridge === undefined ? undefined : procCpu(bridge)?.selfMicros,
      rpcServer: rpcServer === undefined ? undefined : procCpu(rpcServer)?.selfMicros,
      postgres: postgres === undefined ? undefined : treeCpuMicros(postgres, ours),
      rabbitmq: rabbitmq === undefined ? undefined : procCpu(rabbitmq)?.selfMicros,
      machineBusy: machineCpu().busyMicros,
    };
  }
}

function nonNegative(value: number | undefined): number | undefined {
  return value === undefined || value < 0 ? undefined : value;
}

/** Share of the whole machine that was busy over a short sample. */
export async function machineBusy(sampleMs = 1000): Promise<number> {
  const before = machineCpu();
  await sleep(sampleMs);
  const after = machineCpu();
  const total = after.totalMicros - before.totalMicros;
  return total > 0 ? (after.busyMicros - before.busyMicros) / total : 0;
}

/** Above this share of all cores busy, something else is running and would skew a scenario. */
export const QUIET_THRESHOLD = 0.15;

/**
 * Waits (at most `maxWaitMs`) for the machine to be quiet before a scenario, since other work
 * on a small machine changes every number; returns the last sample, to be reported.
 */
export async function waitForQuiet(maxWaitMs: number): Promise<number> {
  const deadline = performance.now() + maxWaitMs;
  let busy = await machineBusy();
  while (busy > QUIET_THRESHOLD && performance.now() < deadline) busy = await machineBusy();
  return busy;
}

/** Keeps the highest VmRSS seen; VmHWM is read as well, since a sample can miss a short peak. */
export class RssSampler {
  readonly #pid: number;
  #peak = 0;

  constructor(pid: number) {
    this.#pid = pid;
  }

  /** The reading, for callers that keep a series as well; undefined once the process is gone. */
  sample(): ProcMemory | undefined {
    const memory = procMemory(this.#pid);
    if (memory !== undefined) this.#peak = Math.max(this.#peak, memory.rssBytes, memory.peakRssBytes);
    return memory;
  }

  get peakBytes(): number {
    return this.#peak;
  }
}

/** p in [0, 1]; nearest-rank on a sorted copy. */
export function percentiles(values: ArrayLike<number>, ps: readonly number[]): number[] {
  const sorted = Float64Array.from(values).sort();
  return ps.map((p) => {
    if (sorted.length === 0) return Number.NaN;
    const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1));
    return sorted[rank] as number;
  });
}

/**
 * Wall-clock milliseconds with sub-millisecond resolution, for comparison with PostgreSQL's
 * now(). Date.now() alone truncates to the millisecond, which would bias latencies of a few
 * milliseconds by half a millisecond; the monotonic clock is anchored at the instant Date.now()
 * ticks, then re-anchored per scenario so drift against the wall clock stays negligible.
 */
export class EpochClock {
  #anchorEpoch = 0;
  #anchorPerf = 0;

  constructor() {
    this.anchor();
  }

  anchor(): void {
    const start = Date.now();
    let now = start;
    // Date.now() advances within a millisecond; the bound only guards against a frozen clock.
    for (let spins = 0; now === start && spins < 10_000_000; spins++) now = Date.now();
    this.#anchorPerf = performance.now();
    this.#anchorEpoch = now;
  }

  nowMs(): number {
    return this.#anchorEpoch + (performance.now() - this.#anchorPerf);
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export function elapsedSeconds(startedAt: number): number {
  return (performance.now() - startedAt) / 1000;
}
