import { createRequire } from 'node:module';
import amqp, { type ConsumeMessage } from 'amqplib';
import autocannon from 'autocannon';
import { ackHoldFor, ChannelAcks } from '../src/amqp/acks.ts';
import { DEFAULT_BATCH_MAX_SIZE } from '../src/config/delivery-schema.ts';
import { defaultPrefetch } from '../src/config/source-schema.ts';
import { encodeEnqueueBody } from '../src/postgrest/request-body.ts';
import { CpuProbe, sleep } from './measure.ts';
import { jobArgs } from './messages.ts';
import type { BenchOptions } from './options.ts';
import { freshQueue, preload, removeQueue } from './queues.ts';
import { rate, type ScenarioResult } from './results.ts';
import { type Context, parties } from './scenarios.ts';

/**
 * The ceilings that make up the limit: what the broker can deliver and take acks for, and what
 * the endpoint (with the database behind it) can enqueue, each without the bridge and measured
 * with code that is not the bridge's, on the same broker, database and endpoint.
 */

/** The bridge's prefetch for these options, which the bare consumer copies. */
export function bridgePrefetch(options: BenchOptions): number {
  return (
    options.prefetch ??
    defaultPrefetch(options.concurrency, { enabled: options.batch, maxSize: DEFAULT_BATCH_MAX_SIZE })
  );
}

/**
 * A bare amqplib consumer that acks every delivery as it arrives, with the bridge's prefetch and
 * its ack coalescing (the same ChannelAcks): the broker's cost of a persistent delivery and its
 * ack, and the least any consumer's client spends on it.
 */
export async function consumeScenario({
  rig,
  options,
  cleanup,
  clock,
  step,
}: Context): Promise<ScenarioResult> {
  const queue = await freshQueue(rig, cleanup, 'consume', step.queueType);
  await preload(rig, queue, options.messages, options.persistent, clock);
  const prefetch = bridgePrefetch(options);
  const connection = await amqp.connect(rig.amqpUrl);
  connection.on('error', () => {});
  try {
    const channel = await connection.createChannel();
    channel.on('error', () => {});
    await channel.prefetch(prefetch);
    const acks = new ChannelAcks<ConsumeMessage>(
      {
        ack: (message, multiple) => channel.ack(message, multiple),
        requeue: (message) => channel.nack(message, false, true),
      },
      ackHoldFor({ prefetch, concurrency: options.concurrency }, options.batch),
    );
    let received = 0;
    let finished: () => void = () => {};
    const allReceived = new Promise<void>((resolve) => {
      finished = resolve;
    });
    const probe = new CpuProbe(parties(rig));
    const started = performance.now();
    await channel.consume(queue, (message) => {
      if (message === null) return;
      acks.delivered(message);
      acks.ack(message);
      if (++received === options.messages) finished();
    });
    const timedOut = await Promise.race([
      allReceived.then(() => false),
      sleep(options.drainTimeout * 1000).then(() => true),
    ]);
    acks.flush();
    // A synchronous method on the same channel: its answer comes after the broker read the acks.
    await channel.checkQueue(queue);
    const seconds = (performance.now() - started) / 1000;
    const cpu = probe.since();
    return {
      name: 'consume',
      label: `bare consumer, ${step.queueType} queue`,
      queueType: step.queueType,
      jobs: received,
      seconds,
      jobsPerSecond: rate(received, seconds),
      clientCpuMicrosPerJob: cpu.harness / Math.max(1, received),
      cpu,
      notes: [
        `amqplib, prefetch ${prefetch}, acks coalesced as the bridge does, nothing else; ` +
          `${options.persistent ? 'persistent' : 'transient'} messages`,
        ...(timedOut
          ? [`TIMED OUT after ${options.drainTimeout} s: ${received} of ${options.messages}`]
          : []),
      ],
    };
  } finally {
    await connection.close().catch(() => undefined);
    await removeQueue(rig, queue);
  }
}

interface CannonRun {
  readonly result: autocannon.Result;
  readonly jobs: number;
}

/**
 * autocannon in this process against one RPC function, each request with a freshly encoded
 * body (as a real client has to build one). Stops after the ceiling's duration.
 */
async function cannon(
  context: Context,
  path: string,
  body: () => string,
  jobsPerCall: number,
): Promise<CannonRun> {
  const { rig, options } = context;
  const result = await autocannon({
    url: rig.rpcUrl,
    connections: options.concurrency,
    duration: options.duration,
    requests: [
      {
        method: 'POST',
        path,
        headers: { 'content-type': 'application/json', accept: 'application/json' },
        setupRequest: (request) => ({ ...request, body: body() }),
      },
    ],
  });
  return { result, jobs: result['2xx'] * jobsPerCall };
}

function cannonResult(
  context: Context,
  scenario: { name: 'autocannon' | 'bulk'; label: string; what: string; how: string },
  run: CannonRun,
  cpu: ReturnType<CpuProbe['since']>,
  rows: number,
): ScenarioResult {
  const { result } = run;
  const failures = result.non2xx + result.errors;
  return {
    name: scenario.name,
    label: scenario.label,
    queueType: context.step.queueType,
    jobs: rows,
    seconds: result.duration,
    jobsPerSecond: rate(rows, result.duration),
    latency: {
      p50Ms: result.latency.p50,
      p99Ms: result.latency.p99,
      p999Ms: result.latency.p99_9,
      maxMs: result.latency.max,
      what: scenario.what,
    },
    clientCpuMicrosPerJob: cpu.harness / Math.max(1, rows),
    cpu,
    notes: [
      scenario.how,
      ...(failures > 0
        ? [`${failures} failed calls (${result.non2xx} non-2xx, ${result.errors} errors)`]
        : []),
      // Calls still in flight when autocannon stops may commit after it: fewer rows is the odd case.
      ...(rows < run.jobs ? [`only ${rows} job rows for ${run.jobs} jobs answered 2xx`] : []),
    ],
  };
}

/** The direct-RPC ceiling with a load tool that is not the bridge's client. */
export async function autocannonScenario(context: Context): Promise<ScenarioResult> {
  const { rig, options } = context;
  await rig.resetJobs();
  let mid = 0;
  const probe = new CpuProbe(parties(rig));
  const run = await cannon(
    context,
    rig.rpcPath('fn_pgqueuer_enqueue'),
    () => encodeEnqueueBody(jobArgs(mid++, Date.now())),
    1,
  );
  const cpu = probe.since();
  return cannonResult(
    context,
    {
      name: 'autocannon',
      label: 'direct-RPC ceiling, autocannon',
      what: 'RPC call',
      how: `autocannon ${autocannonVersion()}, ${options.concurrency} connections, one job per call`,
    },
    run,
    cpu,
    await rig.countJobs(),
  );
}

/** The bulk function at the bridge's batch size and concurrency: the endpoint's and database's share. */
export async function bulkScenario(context: Context): Promise<ScenarioResult> {
  const { rig, options } = context;
  await rig.resetJobs();
  let mid = 0;
  const body = (): string => {
    const jobs: string[] = [];
    for (let i = 0; i < DEFAULT_BATCH_MAX_SIZE; i++) jobs.push(encodeEnqueueBody(jobArgs(mid++, Date.now())));
    return `{"jobs":[${jobs.join(',')}]}`;
  };
  const probe = new CpuProbe(parties(rig));
  const run = await cannon(context, rig.rpcPath('fn_pgqueuer_enqueue_batch'), body, DEFAULT_BATCH_MAX_SIZE);
  const cpu = probe.since();
  return cannonResult(
    context,
    {
      name: 'bulk',
      label: 'bulk-call ceiling',
      what: `bulk call of ${DEFAULT_BATCH_MAX_SIZE}`,
      how:
        `autocannon ${autocannonVersion()}, ${options.concurrency} connections, ` +
        `${DEFAULT_BATCH_MAX_SIZE} jobs per call of the bulk function`,
    },
    run,
    cpu,
    await rig.countJobs(),
  );
}

/** autocannon's version, for the report: it is the measuring instrument. */
function autocannonVersion(): string {
  try {
    return (createRequire(import.meta.url)('autocannon/package.json') as { version?: string }).version ?? '?';
  } catch {
    return '?';
  }
}
