import { allJobsDone, exitedEarly, POLL_MS, waitForDrain, withBridge } from './bridge.ts';
import { CpuProbe, elapsedSeconds, RssSampler, sleep } from './measure.ts';
import { procMemory } from './procs.ts';
import { freshQueue, preload, publishEnvelopes, readyCount } from './queues.ts';
import { rate, type ScenarioResult } from './results.ts';
import { type Context, parties } from './scenarios.ts';

/**
 * Large payloads against the bridge's in-flight byte budget (intake.maxInFlightBytes, set to
 * --large-budget): a soak, where messages are published while the bridge consumes, and a drain
 * of a full queue. What matters is that RSS is bounded by the budget however many bytes go
 * through; the soak measures the idle RSS first, which both rows are compared with.
 */

/** With no new job for this long the bridge is stuck. */
const STALL_MS = 60_000;
/** Bytes per top-up of the soak. */
const TOP_UP_BYTES = 32 * 1024 * 1024;
/** Before the idle RSS is read: the bridge has connected and settled after start-up. */
const SETTLE_MS = 500;

export async function largeScenario(context: Context): Promise<ScenarioResult[]> {
  const size = context.step.payloadBytes ?? 64 * 1024;
  const soak = await largeSoak(context, size);
  const idle = soak.details?.idleRssBytes;
  const drain = await largeDrain(context, size, typeof idle === 'number' ? idle : undefined);
  return [soak, drain];
}

function sizeLabel(bytes: number): string {
  return bytes >= 1024 * 1024 ? `${bytes / 1024 / 1024} MiB` : `${bytes / 1024} KiB`;
}

function result(
  context: Context,
  what: 'soak' | 'drain',
  run: { jobs: number; seconds: number; peakRssBytes: number; idleRssBytes: number | undefined },
  cpu: ReturnType<CpuProbe['since']>,
  notes: string[],
): ScenarioResult {
  const size = context.step.payloadBytes ?? 0;
  const megabytesPerSecond = rate(run.jobs * size, run.seconds) / 1e6;
  const budget = context.options.largeBudget;
  const growth = run.idleRssBytes === undefined ? undefined : run.peakRssBytes - run.idleRssBytes;
  return {
    name: 'large',
    label: `large ${what}, ${sizeLabel(size)}`,
    queueType: context.step.queueType,
    payloadBytes: size,
    inFlightBudgetBytes: budget,
    jobs: run.jobs,
    seconds: run.seconds,
    jobsPerSecond: rate(run.jobs, run.seconds),
    clientCpuMicrosPerJob: (cpu.bridge ?? 0) / Math.max(1, run.jobs),
    peakRssBytes: run.peakRssBytes,
    cpu,
    notes: [
      `${megabytesPerSecond.toFixed(0)} MB/s of payload; byte budget ${sizeLabel(budget)}; ` +
        (growth === undefined
          ? 'idle RSS unknown'
          : `RSS ${mib(run.idleRssBytes ?? 0)} MiB idle → ${mib(run.peakRssBytes)} MiB peak ` +
            `(+${(growth / budget).toFixed(2)} budgets)`),
      ...notes,
    ],
    details: { megabytesPerSecond, idleRssBytes: run.idleRssBytes },
  };
}

const mib = (bytes: number): string => (bytes / 1024 / 1024).toFixed(0);

async function largeSoak(context: Context, size: number): Promise<ScenarioResult> {
  const { rig, options, clock, step } = context;
  const count = Math.ceil((2 * options.largeBytes) / size);
  const backlog = Math.max(1, Math.floor(options.largeBytes / size));
  const topUp = Math.max(1, Math.floor(TOP_UP_BYTES / size));
  const queue = await freshQueue(rig, context.cleanup, 'large-soak', step.queueType);
  await rig.resetJobs();
  return withBridge(
    context,
    queue,
    async ({ bridge, pid }) => {
      await bridge.waitUntilReady(30_000);
      await sleep(SETTLE_MS);
      const idleRssBytes = procMemory(pid)?.rssBytes;
      const probe = new CpuProbe(parties(rig, pid));
      const rss = new RssSampler(pid);
      const started = performance.now();
      let published = 0;
      let progress = { ids: 0, at: started };
      let stalled = false;
      for (;;) {
        const exited = exitedEarly(bridge);
        if (exited !== undefined) throw exited;
        rss.sample();
        const ids = await rig.idsTaken();
        const now = performance.now();
        if (ids > progress.ids) progress = { ids, at: now };
        else if (now - progress.at > STALL_MS) {
          stalled = true;
          break;
        }
        if (published < count && (await readyCount(rig, queue)) < backlog) {
          const n = Math.min(topUp, count - published);
          await publishEnvelopes(
            rig,
            queue,
            { first: published, count: n, persistent: options.persistent, payloadBytes: size },
            clock,
          );
          published += n;
          continue;
        }
        if (published === count && (await allJobsDone(rig, queue, count, ids))) break;
        await sleep(POLL_MS);
      }
      const seconds = elapsedSeconds(started);
      const cpu = probe.since();
      rss.sample();
      return result(
        context,
        'soak',
        { jobs: await rig.countJobs(), seconds, peakRssBytes: rss.peakBytes, idleRssBytes },
        cpu,
        [
          `${count} messages published ${topUp} at a time while the bridge consumed, below ${backlog} ready`,
          ...(stalled ? [`STALLED: no new job for ${STALL_MS / 1000} s`] : []),
        ],
      );
    },
    { maxInFlightBytes: options.largeBudget },
  );
}

async function largeDrain(
  context: Context,
  size: number,
  idleRssBytes: number | undefined,
): Promise<ScenarioResult> {
  const { rig, options, clock, step } = context;
  const count = Math.ceil(options.largeBytes / size);
  const queue = await freshQueue(rig, context.cleanup, 'large-drain', step.queueType);
  await preload(rig, queue, count, options.persistent, clock, size);
  await rig.resetJobs();
  return withBridge(
    context,
    queue,
    async ({ bridge, pid, started }) => {
      const probe = new CpuProbe(parties(rig, pid));
      const rss = new RssSampler(pid);
      const deadline = started + options.drainTimeout * 1000;
      const timedOut = await waitForDrain(rig, queue, count, { bridge, rss, deadline });
      const seconds = elapsedSeconds(started);
      const cpu = probe.since();
      rss.sample();
      return result(
        context,
        'drain',
        { jobs: await rig.countJobs(), seconds, peakRssBytes: rss.peakBytes, idleRssBytes },
        cpu,
        [
          `${count} messages pre-loaded; timed from starting the bridge; idle RSS from the soak before it`,
          ...(timedOut ? [`TIMED OUT after ${options.drainTimeout} s`] : []),
        ],
      );
    },
    { maxInFlightBytes: options.largeBudget },
  );
}
