import { BridgeProcess } from '../test/support/bridge-process.ts';
import { queueCounts, waitFor } from '../test/support/rabbit.ts';
import { stopChild } from './cleanup.ts';
import { CpuProbe, elapsedSeconds, RssSampler, sleep } from './measure.ts';
import { procCpu } from './procs.ts';
import { profileDir, readHotFunctions } from './profile.ts';
import { freshQueue, preload, queueArguments, readyCount, removeQueue } from './queues.ts';
import { rate, type ScenarioResult } from './results.ts';
import type { Rig } from './rig.ts';
import { type Context, parties } from './scenarios.ts';

/** The built bridge (dist/main.js) as a child process, draining a full queue. */

export const POLL_MS = 50;
const STOP_GRACE_MS = 20_000;

/** What a scenario changes in how the bridge runs. */
export interface BridgeSetup {
  /** intake.maxInFlightBytes; undefined keeps the bridge's default. */
  readonly maxInFlightBytes?: number;
  /** Write V8 CPU profiles (node --cpu-prof) into this directory. */
  readonly cpuProfDir?: string | undefined;
}

function bridgeConfig(
  rig: Rig,
  queue: string,
  { options, step }: Pick<Context, 'options' | 'step'>,
  setup: BridgeSetup,
): Record<string, unknown> {
  return {
    amqp: { url: rig.amqpUrl },
    postgrest: { url: rig.rpcUrl },
    concurrency: options.concurrency,
    sources: [
      {
        queue,
        queueArguments: queueArguments(step.queueType),
        ...(rig.ledger ? { idempotency: { messageId: 'message-id' } } : {}),
        ...(options.prefetch === undefined ? {} : { prefetch: options.prefetch }),
      },
    ],
    ...(options.batch ? { batch: { enabled: true } } : {}),
    ...(setup.maxInFlightBytes === undefined ? {} : { intake: { maxInFlightBytes: setup.maxInFlightBytes } }),
    http: { host: '127.0.0.1', port: 0 },
    log: { level: 'info' },
  };
}

export interface RunningBridge {
  readonly bridge: BridgeProcess;
  readonly pid: number;
  /** performance.now() just before the process was spawned. */
  readonly started: number;
}

/**
 * Runs `measure` while the bridge consumes `queue`, then stops the bridge and deletes the queue
 * however `measure` ended, so that neither weighs on the scenarios after it.
 */
export async function withBridge<T>(
  context: Context,
  queue: string,
  measure: (running: RunningBridge) => Promise<T>,
  setup: BridgeSetup = {},
): Promise<T> {
  const started = performance.now();
  const nodeArgs = setup.cpuProfDir === undefined ? [] : ['--cpu-prof', `--cpu-prof-dir=${setup.cpuProfDir}`];
  const bridge = new BridgeProcess(bridgeConfig(context.rig, queue, context, setup), {}, nodeArgs);
  context.cleanup.addChild('stop the bridge', bridge.child, STOP_GRACE_MS);
  try {
    const pid = bridge.child.pid;
    if (pid === undefined) throw new Error('the bridge process did not start');
    return await measure({ bridge, pid, started });
  } finally {
    await stopChild(bridge.child, STOP_GRACE_MS);
    await removeQueue(context.rig, queue);
  }
}

export function exitedEarly(bridge: BridgeProcess): Error | undefined {
  if (bridge.child.exitCode === null && bridge.child.signalCode === null) return undefined;
  return new Error(
    `the bridge exited (${bridge.child.exitCode ?? bridge.child.signalCode}):\n${bridge.tail(10)}\n${bridge.stderr.join('')}`,
  );
}

export async function drainScenario(context: Context): Promise<ScenarioResult> {
  const { rig, options, clock, step } = context;
  const queue = await freshQueue(rig, context.cleanup, 'drain', step.queueType);
  const loadStarted = performance.now();
  await preload(rig, queue, options.messages, options.persistent, clock);
  const loadSeconds = elapsedSeconds(loadStarted);
  await rig.resetJobs();
  const profile =
    options.cpuProf === undefined ? undefined : profileDir(options.cpuProf, `drain-${step.queueType}`);
  const result = await withBridge(
    context,
    queue,
    async ({ bridge, pid, started }): Promise<ScenarioResult> => {
      const probe = new CpuProbe(parties(rig, pid));
      const rss = new RssSampler(pid);
      const deadline = started + options.drainTimeout * 1000;
      let startupCpuMicros: number | undefined;
      const timedOut = await waitForDrain(rig, queue, options.messages, { bridge, rss, deadline }, (ids) => {
        startupCpuMicros ??= startupCpu(pid, ids);
      });
      const seconds = elapsedSeconds(started);
      const cpu = probe.since();
      rss.sample();
      const jobs = await rig.countJobs();
      const check = await verifyDrain(rig, queue, options.messages, timedOut);
      const bridgeCpu = cpu.bridge ?? 0;
      const work = workCpu(startupCpuMicros, bridgeCpu, jobs);
      return {
        name: 'drain',
        label: `bridge drain, ${step.queueType} queue`,
        queueType: step.queueType,
        ...(work.details.workCpuMicrosPerJob === undefined
          ? {}
          : { workCpuMicrosPerJob: work.details.workCpuMicrosPerJob }),
        jobs,
        seconds,
        jobsPerSecond: rate(jobs, seconds),
        clientCpuMicrosPerJob: bridgeCpu / Math.max(1, jobs),
        peakRssBytes: rss.peakBytes,
        cpu,
        notes: [
          ...(timedOut
            ? [`TIMED OUT after ${options.drainTimeout} s: ${jobs} of ${options.messages} jobs`]
            : []),
          ...check.problems,
          `${options.messages} messages loaded in ${loadSeconds.toFixed(1)} s; ${TIMED_UNTIL_DONE}`,
          ...work.notes,
          ...rowsWindowNotes(check),
        ],
        details: {
          queue,
          loaded: options.messages,
          loadSeconds,
          ...work.details,
          ...checkDetails(check),
        },
      };
    },
    { cpuProfDir: profile },
  );
  return profile === undefined ? result : withProfile(result, profile);
}

/** The bridge's profile is written as it exits, so it is read after withBridge has stopped it. */
function withProfile(result: ScenarioResult, dir: string): ScenarioResult {
  const hot = readHotFunctions(dir);
  if (hot === undefined)
    return { ...result, notes: [...result.notes, `no CPU profile was written to ${dir}`] };
  return { ...result, details: { ...result.details, profile: hot } };
}

export const TIMED_UNTIL_DONE =
  'timed from starting the bridge until every job row exists and nothing is left in the queue';

/**
 * The bridge's CPU when it took its first job, or undefined before: start-up ends there, and
 * from then on its CPU is per-message work.
 */
export function startupCpu(pid: number, ids: number): number | undefined {
  return ids > 0 ? procCpu(pid)?.selfMicros : undefined;
}

/** Every message is a job row and nothing is ready in the queue; `ids` is a fresh rig.idsTaken(). */
/**
 * Polls until every one of `expected` jobs exists and the queue is empty, sampling the bridge's
 * RSS and failing if it exits; `onIds` sees each poll's ids taken. True when the deadline passed.
 */
export async function waitForDrain(
  rig: Rig,
  queue: string,
  expected: number,
  { bridge, rss, deadline }: { bridge: BridgeProcess; rss: RssSampler; deadline: number },
  onIds: (ids: number) => void = () => {},
): Promise<boolean> {
  for (;;) {
    rss.sample();
    const exited = exitedEarly(bridge);
    if (exited !== undefined) throw exited;
    if (performance.now() > deadline) return true;
    const ids = await rig.idsTaken();
    onIds(ids);
    if (await allJobsDone(rig, queue, expected, ids)) return false;
    await sleep(POLL_MS);
  }
}

export async function allJobsDone(rig: Rig, queue: string, expected: number, ids: number): Promise<boolean> {
  return ids >= expected && (await rig.countJobs()) >= expected && (await readyCount(rig, queue)) === 0;
}

/** The bridge's CPU split into start-up and the work per message after it. */
export function workCpu(
  startupCpuMicros: number | undefined,
  bridgeCpuMicros: number,
  jobs: number,
): { notes: string[]; details: Record<string, number | undefined> } {
  if (startupCpuMicros === undefined) return { notes: [], details: {} };
  const perJob = (bridgeCpuMicros - startupCpuMicros) / Math.max(1, jobs);
  return {
    notes: [
      `bridge start-up took ${(startupCpuMicros / 1000).toFixed(0)} ms of CPU; ` +
        `after it, ${perJob.toFixed(0)} µs per message`,
    ],
    details: { startupCpuMicros, workCpuMicrosPerJob: perJob },
  };
}

export function rowsWindowNotes(check: DrainCheck): string[] {
  return check.rowsWindowJobsPerSecond === undefined
    ? []
    : [`${check.rowsWindowJobsPerSecond.toFixed(0)} jobs/s from the first job row to the last`];
}

export function checkDetails(check: DrainCheck): Record<string, number | undefined> {
  return {
    duplicates: check.duplicates,
    unackedAtEnd: check.unackedAtEnd,
    rowsWindowSeconds: check.rowsWindowSeconds,
    rowsWindowJobsPerSecond: check.rowsWindowJobsPerSecond,
  };
}

export interface DrainCheck {
  readonly problems: string[];
  readonly duplicates: number;
  readonly unackedAtEnd: number | undefined;
  readonly rowsWindowSeconds: number;
  /** From the first job row to the last: the rate once the bridge is up, start-up excluded. */
  readonly rowsWindowJobsPerSecond: number | undefined;
}

/** Every message became exactly one job, and nothing is left unacked. */
export async function verifyDrain(
  rig: Rig,
  queue: string,
  expected: number,
  timedOut: boolean,
): Promise<DrainCheck> {
  const problems: string[] = [];
  const { rows } = await rig.db.pool.query<{ jobs: string; distinct_mids: string; window_s: number | null }>(
    `SELECT count(*) AS jobs, count(DISTINCT headers->>'mid') AS distinct_mids,
            extract(epoch FROM max(created) - min(created))::float8 AS window_s
       FROM pgqueuer`,
  );
  const row = rows[0];
  const jobs = Number(row?.jobs ?? 0);
  const distinct = Number(row?.distinct_mids ?? 0);
  if (distinct !== jobs) problems.push(`${jobs - distinct} duplicate jobs`);
  if (!timedOut && distinct !== expected) problems.push(`${expected - distinct} messages without a job`);
  let unacked: number | undefined;
  if (!timedOut) {
    try {
      await waitFor(
        async () => {
          unacked = (await queueCounts(queue)).unacked;
          return unacked === 0;
        },
        { timeoutMs: 30_000, intervalMs: 500, message: `queue ${queue} to have nothing unacked` },
      );
    } catch (error) {
      problems.push(String(error));
    }
  }
  const windowSeconds = row?.window_s ?? 0;
  return {
    problems,
    duplicates: jobs - distinct,
    unackedAtEnd: unacked,
    rowsWindowSeconds: windowSeconds,
    rowsWindowJobsPerSecond: windowSeconds > 0 ? (jobs - 1) / windowSeconds : undefined,
  };
}
