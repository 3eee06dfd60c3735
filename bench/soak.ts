import {
  allJobsDone,
  checkDetails,
  exitedEarly,
  POLL_MS,
  rowsWindowNotes,
  startupCpu,
  TIMED_UNTIL_DONE,
  verifyDrain,
  withBridge,
  workCpu,
} from './bridge.ts';
import { CpuProbe, elapsedSeconds, RssSampler, sleep } from './measure.ts';
import { freshQueue, publishEnvelopes, readyCount } from './queues.ts';
import { rate, type ScenarioResult } from './results.ts';
import { type Context, parties } from './scenarios.ts';
import { describeSoak, type SoakSample, summariseSoak } from './soak-summary.ts';

/**
 * The built bridge fed `--soak-messages` messages (1M by default) while its RSS is sampled: a
 * leak that a 100k drain hides shows here as growth. The messages are published while the
 * bridge consumes, topped up whenever fewer than BACKLOG are ready, so the broker holds a bounded
 * queue instead of a million persistent messages.
 */

/**
 * Ready messages that stop the top-ups: a few seconds of batch-mode work. On a 2-core machine the
 * publisher, sharing the cores with the bridge, seldom gets that far ahead (about 10k in a 1M
 * run), so the bridge takes messages about as fast as they are confirmed.
 */
const BACKLOG = 50_000;
/**
 * Messages per top-up. After each the loop samples again, so with a publisher at ~15k msg/s a
 * sample is at most a few hundred milliseconds late.
 */
const TOP_UP = 5000;
const SAMPLE_MS = 1000;
/**
 * No new job for this long means the bridge is stuck. A stall rather than a deadline, because
 * how long the whole soak takes depends on the mode (single mode is 10× slower).
 */
const STALL_MS = 60_000;

export async function soakScenario(context: Context): Promise<ScenarioResult> {
  const { rig, options, clock } = context;
  const messages = options.soakMessages;
  const queue = await freshQueue(rig, context.cleanup, 'soak');
  await rig.resetJobs();
  return withBridge(context, queue, async ({ bridge, pid, started }) => {
    const probe = new CpuProbe(parties(rig, pid));
    const rss = new RssSampler(pid);
    const samples: SoakSample[] = [];
    const record = (jobs: number, published: number, ready: number): void => {
      const memory = rss.sample();
      if (memory === undefined) return;
      samples.push({ seconds: elapsedSeconds(started), jobs, rssBytes: memory.rssBytes, published, ready });
    };
    let published = 0;
    let maxReady = 0;
    let startupCpuMicros: number | undefined;
    let lastSampleAt = Number.NEGATIVE_INFINITY;
    let progress = { ids: 0, at: started };
    let stalled = false;
    for (;;) {
      const exited = exitedEarly(bridge);
      if (exited !== undefined) throw exited;
      const ids = await rig.idsTaken();
      startupCpuMicros ??= startupCpu(pid, ids);
      const ready = await readyCount(rig, queue);
      maxReady = Math.max(maxReady, ready);
      const now = performance.now();
      if (now - lastSampleAt >= SAMPLE_MS) {
        record(ids, published, ready);
        lastSampleAt = now;
      }
      if (ids > progress.ids) progress = { ids, at: now };
      else if (now - progress.at > STALL_MS) {
        stalled = true;
        break;
      }
      if (published < messages && ready < BACKLOG) {
        const count = Math.min(TOP_UP, messages - published);
        await publishEnvelopes(
          rig,
          queue,
          { first: published, count, persistent: options.persistent },
          clock,
        );
        published += count;
        continue;
      }
      if (published === messages && (await allJobsDone(rig, queue, messages, ids))) break;
      await sleep(POLL_MS);
    }
    const seconds = elapsedSeconds(started);
    const cpu = probe.since();
    // The end point, read once every message is a job and the bridge has nothing left to do.
    record(await rig.idsTaken(), published, await readyCount(rig, queue));
    const jobs = await rig.countJobs();
    const check = await verifyDrain(rig, queue, messages, stalled);
    const summary = summariseSoak(samples, messages, rss.peakBytes);
    const work = workCpu(startupCpuMicros, cpu.bridge ?? 0, jobs);
    return {
      name: 'soak',
      label: 'bridge soak',
      jobs,
      seconds,
      jobsPerSecond: rate(jobs, seconds),
      clientCpuMicrosPerJob: (cpu.bridge ?? 0) / Math.max(1, jobs),
      peakRssBytes: summary.peakRssBytes,
      cpu,
      notes: [
        ...(stalled ? [`STALLED: no new job for ${STALL_MS / 1000} s; ${jobs} of ${messages} jobs`] : []),
        ...check.problems,
        describeSoak(summary),
        `${published} messages published ${TOP_UP} at a time with confirms while the bridge consumed, ` +
          `topped up below ${BACKLOG} ready (at most ${maxReady} seen); ${TIMED_UNTIL_DONE}`,
        ...work.notes,
        ...rowsWindowNotes(check),
      ],
      details: {
        queue,
        published,
        backlog: BACKLOG,
        maxReady,
        ...work.details,
        ...checkDetails(check),
        summary,
        series: samples,
      },
    };
  });
}
