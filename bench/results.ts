import type { CpuUse } from './measure.ts';
import type { QueueType, ScenarioName } from './options.ts';

export interface Latency {
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly p999Ms?: number;
  readonly maxMs: number;
  /** What was timed, e.g. "RPC call" or "publish → job row". */
  readonly what: string;
}

export interface ScenarioResult {
  readonly name: ScenarioName;
  readonly label: string;
  /** The queue the messages came from (scenarios with a broker). */
  readonly queueType?: QueueType;
  /** steady: the publish rate, and whether the bridge kept up with it. */
  readonly rate?: number;
  readonly keptUp?: boolean;
  /** large: payload bytes per message, and the bridge's byte budget. */
  readonly payloadBytes?: number;
  readonly inFlightBudgetBytes?: number;
  readonly jobs: number;
  readonly seconds: number;
  readonly jobsPerSecond: number;
  readonly latency?: Latency;
  /**
   * CPU per job of the process that stands where the bridge stands: the bridge itself, or this
   * process when it is the client (the direct-RPC load generator, the naive consumer).
   */
  readonly clientCpuMicrosPerJob?: number;
  /** The bridge's CPU per message after its start-up, when it ran. */
  readonly workCpuMicrosPerJob?: number;
  readonly peakRssBytes?: number;
  readonly cpu: CpuUse;
  /** Share of all cores busy just before the scenario started (this run's processes idle). */
  readonly backgroundBusy?: number;
  /** The 1, 5 and 15 minute load averages when the scenario ended: other work on the machine shows here. */
  readonly loadAverage?: readonly number[];
  /** Things to know when reading the row (partial runs, errors, derived figures). */
  readonly notes: readonly string[];
  readonly details?: Readonly<Record<string, unknown>>;
}

export function rate(jobs: number, seconds: number): number {
  return seconds > 0 ? jobs / seconds : 0;
}
