import type { ConfirmChannel } from 'amqplib';
import type { BridgeProcess } from '../test/support/bridge-process.ts';
import { exitedEarly, POLL_MS, withBridge } from './bridge.ts';
import { CpuProbe, elapsedSeconds, RssSampler, sleep } from './measure.ts';
import { CONTENT_TYPE, envelope } from './messages.ts';
import { procCpu } from './procs.ts';
import { freshQueue, publishEnvelopes } from './queues.ts';
import { type Latency, rate, type ScenarioResult } from './results.ts';
import type { Rig } from './rig.ts';
import { type Context, parties } from './scenarios.ts';

/**
 * The built bridge at a fixed publish rate: publish→job-row latency and the bridge's CPU while
 * it keeps up. A freshly started bridge (and everything around it) runs slower until its code
 * is compiled, which at this rate shows as a backlog of several seconds; the warm-up burst
 * keeps that transient out of the steady-state numbers (--steady-warmup 0 measures it).
 */

export async function steadyScenario(context: Context): Promise<ScenarioResult> {
  const { rig, options, clock, step } = context;
  const rateGoal = step.rate ?? options.rates[0] ?? 1000;
  const queue = await freshQueue(rig, context.cleanup, 'steady', step.queueType);
  await rig.resetJobs();
  return withBridge(context, queue, async ({ bridge, pid }) => {
    await bridge.waitUntilReady(30_000);
    const startupCpuMicros = procCpu(pid)?.selfMicros;
    const warmup = options.steadyWarmup;
    if (warmup > 0) {
      await publishEnvelopes(rig, queue, { first: 0, count: warmup, persistent: options.persistent }, clock);
      if (!(await waitForJobs(rig, bridge, warmup, 60_000))) {
        throw new Error(`the warm-up's ${warmup} messages did not all become jobs within 60 s`);
      }
      await rig.resetJobs();
    }

    const total = rateGoal * options.steadyDuration;
    const channel = await rig.broker.channel();
    const probe = new CpuProbe(parties(rig, pid));
    const rss = new RssSampler(pid);
    clock.anchor();
    const started = performance.now();
    const publishDeadline = started + (options.steadyDuration + 30) * 1000;
    let sent = 0;
    let lastSample = started;
    while (sent < total && performance.now() < publishDeadline) {
      const due = Math.min(total, Math.floor(((performance.now() - started) / 1000) * rateGoal));
      while (sent < due) {
        // Stamped one by one, at the moment each is handed to the client library.
        const accepted = channel.publish('', queue, envelope(warmup + sent, clock.nowMs()), {
          persistent: options.persistent,
          contentType: CONTENT_TYPE,
          ...(rig.ledger ? { messageId: String(warmup + sent) } : {}),
        });
        sent++;
        if (!accepted) await drained(channel);
      }
      if (performance.now() - lastSample >= 100) {
        rss.sample();
        lastSample = performance.now();
        const exited = exitedEarly(bridge);
        if (exited !== undefined) throw exited;
      }
      await sleep(1);
    }
    const publishSeconds = elapsedSeconds(started);
    await channel.waitForConfirms();
    await waitForJobs(rig, bridge, sent, 60_000, rss);
    const seconds = elapsedSeconds(started);
    const cpu = probe.since();
    rss.sample();
    const jobs = await rig.countJobs();
    const latency = await publishToRow(rig);
    const bridgeCpu = cpu.bridge ?? 0;
    const lagSeconds = seconds - publishSeconds;
    const publishRate = rate(sent, publishSeconds);
    return {
      name: 'steady',
      label: `steady ${rateGoal}/s`,
      queueType: step.queueType,
      rate: rateGoal,
      keptUp: keptUp({ goal: rateGoal, publishRate, published: sent, jobs, lagSeconds }),
      jobs,
      seconds,
      jobsPerSecond: rate(jobs, seconds),
      latency,
      clientCpuMicrosPerJob: bridgeCpu / Math.max(1, jobs),
      peakRssBytes: rss.peakBytes,
      cpu,
      notes: [
        `${sent} messages published in ${publishSeconds.toFixed(1)} s after a warm-up of ${warmup}; ` +
          `bridge busy ${((100 * bridgeCpu) / Math.max(1, cpu.wallMicros)).toFixed(1)}% of one core`,
        ...(jobs < sent ? [`only ${jobs} of ${sent} published messages became jobs within 60 s`] : []),
        ...(lagSeconds > MAX_LAG_SECONDS
          ? [`did not keep up: the last job row came ${lagSeconds.toFixed(1)} s after the last publish`]
          : []),
        ...(publishRate < PUBLISH_SHORTFALL * rateGoal
          ? [`the publisher itself reached only ${publishRate.toFixed(0)}/s of ${rateGoal}/s`]
          : []),
      ],
      details: {
        queue,
        warmup,
        published: sent,
        publishSeconds,
        publishRate,
        startupCpuMicros,
      },
    };
  });
}

/** The last row may come this long after the last publish and the bridge still counts as keeping up. */
const MAX_LAG_SECONDS = 1;
/** Below this share of the goal the publisher, not the bridge, set the rate. */
const PUBLISH_SHORTFALL = 0.95;

/** Every message became a job, the rows kept pace with the publisher, and it published at the rate asked. */
export function keptUp(run: {
  goal: number;
  publishRate: number;
  published: number;
  jobs: number;
  lagSeconds: number;
}): boolean {
  return (
    run.jobs >= run.published &&
    run.lagSeconds <= MAX_LAG_SECONDS &&
    run.publishRate >= PUBLISH_SHORTFALL * run.goal
  );
}

async function waitForJobs(
  rig: Rig,
  bridge: BridgeProcess,
  expected: number,
  timeoutMs: number,
  rss?: RssSampler,
): Promise<boolean> {
  const deadline = performance.now() + timeoutMs;
  while (performance.now() < deadline) {
    if ((await rig.idsTaken()) >= expected && (await rig.countJobs()) >= expected) return true;
    const exited = exitedEarly(bridge);
    if (exited !== undefined) throw exited;
    rss?.sample();
    await sleep(POLL_MS);
  }
  return false;
}

/**
 * Also settles when the channel closes (the next publish then throws), and gives up when the
 * broker stops reading for long, e.g. under a memory alarm.
 */
function drained(channel: ConfirmChannel, timeoutMs = 30_000): Promise<void> {
  return new Promise((resolve, reject) => {
    const done = (): void => {
      clearTimeout(timer);
      channel.off('drain', done);
      channel.off('close', done);
      resolve();
    };
    const timer = setTimeout(() => {
      channel.off('drain', done);
      channel.off('close', done);
      reject(new Error(`the broker did not take more messages within ${timeoutMs} ms`));
    }, timeoutMs);
    channel.once('drain', done);
    channel.once('close', done);
  });
}

/**
 * From the publish time carried in each job's headers to the row's `created` (now() of the
 * enqueue transaction), both read from this machine's clock.
 */
async function publishToRow(rig: Rig): Promise<Latency> {
  const { rows } = await rig.db.pool.query<{ p: number[]; max: number }>(
    `SELECT percentile_disc(ARRAY[0.5, 0.99, 0.999]) WITHIN GROUP (ORDER BY lat) AS p, max(lat) AS max
       FROM (SELECT extract(epoch FROM created)::float8 * 1000 - (headers->>'t')::float8 AS lat FROM pgqueuer) s`,
  );
  const row = rows[0];
  return {
    p50Ms: Number(row?.p[0] ?? Number.NaN),
    p99Ms: Number(row?.p[1] ?? Number.NaN),
    p999Ms: Number(row?.p[2] ?? Number.NaN),
    maxMs: Number(row?.max ?? Number.NaN),
    what: 'publish → job row',
  };
}
