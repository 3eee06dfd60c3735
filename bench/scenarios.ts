import type { ConsumeMessage } from 'amqplib';
import amqp from 'amqplib';
import type { Cleanup } from './cleanup.ts';
import { databaseCeiling, directRpc, type LoadOptions, type LoadResult, rpcClient } from './load.ts';
import { CpuProbe, type EpochClock, type Parties, percentiles, sleep } from './measure.ts';
import { decodeEnvelope } from './messages.ts';
import type { BenchOptions, Step } from './options.ts';
import { freshQueue, preload, removeQueue } from './queues.ts';
import { type Latency, rate, type ScenarioResult } from './results.ts';
import type { Rig } from './rig.ts';

/** The two ceilings and the naive consumer: everything measured without the bridge. */

export interface Context {
  readonly rig: Rig;
  readonly options: BenchOptions;
  readonly cleanup: Cleanup;
  readonly clock: EpochClock;
  /** The run being made: its queue type, and its rate or payload size where it has one. */
  readonly step: Step;
}

/** The processes whose CPU each scenario reports, with the bridge when one runs. */
export function parties(rig: Rig, bridge?: number): Parties {
  return {
    bridge,
    rpcServer: rig.endpoint.pid,
    postgres: rig.postgresPid,
    database: rig.databaseName,
    rabbitmq: rig.rabbitmqPid,
  };
}

function loadNotes(result: LoadResult): string[] {
  return result.errors === 0 ? [] : [`${result.errors} failed calls, first: ${result.firstError ?? '?'}`];
}

function latencyOf(result: LoadResult, what: string): Latency {
  const [p50Ms = Number.NaN, p99Ms = Number.NaN, p999Ms = Number.NaN, maxMs = Number.NaN] = percentiles(
    result.latenciesMs,
    [0.5, 0.99, 0.999, 1],
  );
  return { p50Ms, p99Ms, p999Ms, maxMs, what };
}

/** A ceiling: a load generator in this process, timed against the same jobs as the bridge. */
async function ceiling(
  { rig, options }: Context,
  scenario: { name: 'database' | 'rpc'; label: string; what: string; how: string },
  load: (limits: LoadOptions) => Promise<LoadResult>,
): Promise<ScenarioResult> {
  await rig.resetJobs();
  const probe = new CpuProbe(parties(rig));
  const result = await load({
    concurrency: options.concurrency,
    maxJobs: options.messages,
    seconds: options.duration,
  });
  const cpu = probe.since();
  return {
    name: scenario.name,
    label: scenario.label,
    jobs: result.jobs,
    seconds: result.seconds,
    jobsPerSecond: rate(result.jobs, result.seconds),
    latency: latencyOf(result, scenario.what),
    clientCpuMicrosPerJob: cpu.harness / Math.max(1, result.jobs),
    cpu,
    notes: [scenario.how, ...loadNotes(result)],
  };
}

export function databaseScenario(context: Context): Promise<ScenarioResult> {
  const how = `${context.options.concurrency} connections, autocommit SELECT fn_pgqueuer_enqueue(...) as pgqapi`;
  return ceiling(context, { name: 'database', label: 'database ceiling', what: 'SQL call', how }, (limits) =>
    databaseCeiling(context.rig.db.connectionString, limits),
  );
}

/** Unmeasured calls so the RPC server's code is compiled before the first measured scenario uses it. */
export async function warmUp(rig: Rig, concurrency: number): Promise<void> {
  await directRpc(rig.rpcUrl, { concurrency, maxJobs: 3000, seconds: 20 });
}

export function rpcScenario(context: Context): Promise<ScenarioResult> {
  const how = `${context.options.concurrency} calls in flight with the bridge's RpcClient`;
  return ceiling(context, { name: 'rpc', label: 'direct-RPC ceiling', what: 'RPC call', how }, (limits) =>
    directRpc(context.rig.rpcUrl, limits),
  );
}

/**
 * What users write first: prefetch 1, one call at a time, ack after the id. It decodes with the
 * bridge's decoder and calls with the bridge's client, so only the flow control differs.
 */
export async function naiveScenario({ rig, options, cleanup, clock }: Context): Promise<ScenarioResult> {
  const queue = await freshQueue(rig, cleanup, 'naive');
  // More than it can take in the time; the rest is deleted with the queue.
  const loaded = Math.min(options.messages, options.naiveDuration * 1500);
  await preload(rig, queue, loaded, options.persistent, clock);
  await rig.resetJobs();
  const connection = await amqp.connect(rig.amqpUrl);
  connection.on('error', () => {});
  const client = rpcClient(rig.rpcUrl, 1);
  const latencies = new Float64Array(loaded);
  let acked = 0;
  let failed = 0;
  let finished: () => void = () => {};
  const allDone = new Promise<void>((resolve) => {
    finished = resolve;
  });
  try {
    const channel = await connection.createChannel();
    channel.on('error', () => {});
    await channel.prefetch(1);
    const probe = new CpuProbe(parties(rig));
    const started = performance.now();
    let lastAckAt = started;
    const onMessage = async (message: ConsumeMessage): Promise<void> => {
      const callStarted = performance.now();
      const result = await client.enqueue(decodeEnvelope(message.content));
      if (result.kind !== 'enqueued') {
        failed++;
        channel.nack(message, false, true);
        return;
      }
      channel.ack(message);
      lastAckAt = performance.now();
      latencies[acked++] = lastAckAt - callStarted;
      if (acked === loaded) finished();
    };
    await channel.consume(queue, (message) => {
      if (message !== null) onMessage(message).catch(() => failed++);
    });
    await Promise.race([allDone, sleep(options.naiveDuration * 1000)]);
    const stoppedAt = performance.now();
    const cpu = probe.since();
    const jobs = acked;
    const seconds = (acked === loaded ? lastAckAt - started : stoppedAt - started) / 1000;
    const result: LoadResult = {
      jobs,
      errors: failed,
      seconds,
      latenciesMs: latencies.subarray(0, jobs),
      firstError: undefined,
    };
    return {
      name: 'naive',
      label: 'naive consumer (prefetch 1)',
      jobs,
      seconds,
      jobsPerSecond: rate(jobs, seconds),
      latency: latencyOf(result, 'RPC call'),
      clientCpuMicrosPerJob: cpu.harness / Math.max(1, jobs),
      cpu,
      notes: [
        `time-bounded: ${options.naiveDuration} s over a queue of ${loaded}`,
        ...(failed > 0 ? [`${failed} failed calls (requeued)`] : []),
      ],
    };
  } finally {
    client.close();
    await connection.close().catch(() => undefined);
    await removeQueue(rig, queue);
  }
}
