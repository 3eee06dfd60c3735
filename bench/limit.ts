import type { CpuUse } from './measure.ts';
import type { QueueType, ScenarioName } from './options.ts';
import type { ScenarioResult } from './results.ts';

/**
 * The physical limit of a bridge on this machine, from ceilings measured in the same run: a bare
 * consumer that only acks (the broker's share) and a load generator calling the endpoint (the
 * endpoint's and the database's share). A bridge must do both on the same cores, so neither
 * rate alone is its limit. No I/O here, so the arithmetic is tested on made-up results.
 */

export interface Ceiling {
  readonly name: ScenarioName;
  /** The mean of the ceiling's runs (the direct-RPC ceiling runs before and after the drain). */
  readonly jobsPerSecond: number;
  readonly runs: readonly ScenarioResult[];
}

export function ceilingOf(
  scenarios: readonly ScenarioResult[],
  name: ScenarioName,
  queueType?: QueueType,
): Ceiling | undefined {
  const runs = scenarios.filter(
    (result) =>
      result.name === name &&
      result.jobsPerSecond > 0 &&
      (queueType === undefined || result.queueType === queueType),
  );
  if (runs.length === 0) return undefined;
  const jobsPerSecond = runs.reduce((sum, run) => sum + run.jobsPerSecond, 0) / runs.length;
  return { name, jobsPerSecond, runs };
}

/**
 * Two stages that share the same cores, each measured alone at `a` and `b` jobs/s: a job costs
 * 1/a + 1/b seconds of the machine, so together they manage 1 / (1/a + 1/b).
 */
export function combinedRate(a: number, b: number): number {
  return a > 0 && b > 0 ? 1 / (1 / a + 1 / b) : 0;
}

/** Jobs per second that `cores` can do when every job costs `microsPerJob` of CPU in total. */
export function cpuBoundRate(cores: number, microsPerJob: number): number {
  return microsPerJob > 0 ? (cores * 1_000_000) / microsPerJob : 0;
}

export type Party = keyof Omit<CpuUse, 'machineBusy' | 'wallMicros'>;

/** The broker and its client (this process) in the bare consumer. */
export const CONSUMER_PARTIES: readonly Party[] = ['rabbitmq', 'harness'];
/** The endpoint, the database and the load generator (this process) in a call ceiling. */
export const CALL_PARTIES: readonly Party[] = ['rpcServer', 'postgres', 'harness'];

export interface PartyCpu {
  readonly microsPerJob: number;
  /** Parties whose CPU could not be read (e.g. a remote endpoint): the sum leaves them out. */
  readonly missing: readonly Party[];
}

/** CPU per job of the given parties over all runs of a ceiling. */
export function partyCpu(runs: readonly ScenarioResult[], parties: readonly Party[]): PartyCpu {
  const jobs = runs.reduce((sum, run) => sum + run.jobs, 0);
  const missing = parties.filter((party) => runs.some((run) => run.cpu[party] === undefined));
  const micros = runs.reduce(
    (sum, run) => sum + parties.reduce((inner, party) => inner + (run.cpu[party] ?? 0), 0),
    0,
  );
  return { microsPerJob: jobs > 0 ? micros / jobs : 0, missing };
}

export interface Limit {
  readonly queueType: QueueType;
  readonly consumer: Ceiling;
  /** The call ceiling: the bulk function in batch mode, one job per call in single mode. */
  readonly call: Ceiling;
  readonly combined: number;
  readonly consumerCpu: PartyCpu;
  readonly callCpu: PartyCpu;
  /** cores ÷ (consumer + call CPU per job). */
  readonly cpuLimit: number;
  readonly drain: ScenarioResult | undefined;
  readonly drainOverCombined: number | undefined;
  readonly drainOverCpuLimit: number | undefined;
}

/** One limit per queue type that has a bare consumer, rated against the drain on that queue type. */
export function limitsOf(scenarios: readonly ScenarioResult[], cores: number, batch: boolean): Limit[] {
  const call = ceilingOf(scenarios, batch ? 'bulk' : 'rpc');
  if (call === undefined) return [];
  const callCpu = partyCpu(call.runs, CALL_PARTIES);
  const types = [
    ...new Set(scenarios.flatMap((result) => (result.name === 'consume' ? [result.queueType] : []))),
  ];
  return types.flatMap((queueType): Limit[] => {
    if (queueType === undefined) return [];
    const consumer = ceilingOf(scenarios, 'consume', queueType);
    if (consumer === undefined) return [];
    const combined = combinedRate(consumer.jobsPerSecond, call.jobsPerSecond);
    const consumerCpu = partyCpu(consumer.runs, CONSUMER_PARTIES);
    const cpuLimit = cpuBoundRate(cores, consumerCpu.microsPerJob + callCpu.microsPerJob);
    const drain = scenarios.find(
      (result) => result.name === 'drain' && result.queueType === queueType && result.jobsPerSecond > 0,
    );
    const over = (limit: number): number | undefined =>
      drain === undefined || limit <= 0 ? undefined : drain.jobsPerSecond / limit;
    return [
      {
        queueType,
        consumer,
        call,
        combined,
        consumerCpu,
        callCpu,
        cpuLimit,
        drain,
        drainOverCombined: over(combined),
        drainOverCpuLimit: over(cpuLimit),
      },
    ];
  });
}

export interface Target {
  readonly what: string;
  /** The measured value, in the goal's unit; undefined when the run did not measure it. */
  readonly value: number | undefined;
  readonly goal: string;
  readonly met: boolean | undefined;
}

/** The bridge's CPU per message after start-up, or over the whole run when start-up was not seen. */
export function bridgeMicrosPerMessage(result: ScenarioResult): number | undefined {
  if (result.workCpuMicrosPerJob !== undefined) return result.workCpuMicrosPerJob;
  return result.cpu.bridge === undefined || result.jobs === 0 ? undefined : result.cpu.bridge / result.jobs;
}

const check = (
  what: string,
  value: number | undefined,
  goal: string,
  met: (v: number) => boolean,
): Target => ({
  what,
  value,
  goal,
  met: value === undefined ? undefined : met(value),
});

export const TARGETS = {
  drainOverLimit: 0.85,
  batchBridgeMicros: 10,
  singleOverClient: 1.1,
  steadyRate: 5000,
  steadyP99Ms: 25,
  /** RSS growth over the idle bridge, in budgets: past twice the budget the pipeline hands arrivals back. */
  rssOverBudget: 2,
} as const;

export function targetsOf(
  scenarios: readonly ScenarioResult[],
  limits: readonly Limit[],
  batch: boolean,
): Target[] {
  const targets: Target[] = [];
  if (batch) {
    for (const limit of limits) {
      targets.push(
        check(
          `batch drain ÷ combined limit, ${limit.queueType} queue`,
          limit.drainOverCombined,
          `≥ ${TARGETS.drainOverLimit}`,
          (v) => v >= TARGETS.drainOverLimit,
        ),
      );
    }
    for (const drain of scenarios.filter((result) => result.name === 'drain')) {
      targets.push(
        check(
          `bridge CPU µs per message, ${drain.label}`,
          bridgeMicrosPerMessage(drain),
          `≤ ${TARGETS.batchBridgeMicros}`,
          (v) => v <= TARGETS.batchBridgeMicros,
        ),
      );
    }
    const steady = scenarios.find((result) => result.name === 'steady' && result.rate === TARGETS.steadyRate);
    targets.push(
      check(
        `steady ${TARGETS.steadyRate}/s p99 publish → job row, ms`,
        steady?.latency?.p99Ms,
        `≤ ${TARGETS.steadyP99Ms}`,
        (v) => v <= TARGETS.steadyP99Ms,
      ),
    );
    for (const large of scenarios.filter((result) => result.name === 'large')) {
      targets.push(
        check(
          `${large.label}: RSS growth ÷ byte budget`,
          rssOverBudget(large),
          `≤ ${TARGETS.rssOverBudget}`,
          (v) => v <= TARGETS.rssOverBudget,
        ),
      );
    }
  } else {
    const own = ceilingOf(scenarios, 'rpc');
    const ownCpu = own === undefined ? undefined : partyCpu(own.runs, ['harness']).microsPerJob;
    for (const drain of scenarios.filter((result) => result.name === 'drain')) {
      const bridge = bridgeMicrosPerMessage(drain);
      targets.push(
        check(
          `${drain.label}: bridge CPU per message ÷ its client's CPU per call in the direct-RPC ceiling`,
          bridge === undefined || ownCpu === undefined || ownCpu === 0 ? undefined : bridge / ownCpu,
          `≤ ${TARGETS.singleOverClient}`,
          (v) => v <= TARGETS.singleOverClient,
        ),
      );
    }
  }
  return targets;
}

/** How far the bridge's RSS grew over its idle size, in byte budgets. */
export function rssOverBudget(result: ScenarioResult): number | undefined {
  const idle = result.details?.idleRssBytes;
  if (result.peakRssBytes === undefined || typeof idle !== 'number' || !result.inFlightBudgetBytes)
    return undefined;
  return (result.peakRssBytes - idle) / result.inFlightBudgetBytes;
}
