import { drainScenario } from './bridge.ts';
import { Cleanup } from './cleanup.ts';
import { EpochClock, machineBusy, QUIET_THRESHOLD, waitForQuiet } from './measure.ts';
import { checkEncoding } from './messages.ts';
import {
  type BenchOptions,
  parseOptions,
  runOrder,
  type ScenarioName,
  USAGE,
  UsageError,
} from './options.ts';
import { formatReport, machineFacts, type Report, writeReport } from './report.ts';
import type { ScenarioResult } from './results.ts';
import { build, checkBuilt, startRig } from './rig.ts';
import { type Context, databaseScenario, naiveScenario, rpcScenario, warmUp } from './scenarios.ts';
import { soakScenario } from './soak.ts';
import { steadyScenario } from './steady.ts';

/**
 * Throughput of the bridge against its ceilings, all in one run on one database and one RPC
 * endpoint: the database alone, the RPC endpoint alone, a naive prefetch-1 consumer, the bridge
 * draining a full queue, and the bridge at a steady publish rate; on request, a memory soak of
 * the bridge over a million messages. Prints a table and writes the results as JSON.
 *
 *   npm run bench -- --help
 */

const RUNNERS: Readonly<Record<ScenarioName, (context: Context) => Promise<ScenarioResult>>> = {
  database: databaseScenario,
  rpc: rpcScenario,
  naive: naiveScenario,
  drain: drainScenario,
  steady: steadyScenario,
  soak: soakScenario,
};

/** The scenarios that run dist/main.js, which must be built first. */
const BRIDGE_SCENARIOS: ReadonlySet<ScenarioName> = new Set(['drain', 'steady', 'soak']);

/** How long a scenario waits for other work on the machine to finish before it runs anyway. */
const QUIET_WAIT_MS = 30_000;

async function main(argv: readonly string[]): Promise<number> {
  let options: BenchOptions | 'help';
  try {
    options = parseOptions(argv);
  } catch (error) {
    if (!(error instanceof UsageError) && !(error instanceof TypeError)) throw error;
    process.stderr.write(`${error.message}\n${USAGE}\n`);
    return 2;
  }
  if (options === 'help') {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const runStarted = performance.now();
  const startedAt = new Date().toISOString();
  const cleanup = new Cleanup();
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      process.stderr.write(`\n${signal}: cleaning up…\n`);
      void cleanup.run().finally(() => process.exit(130));
    });
  }
  try {
    const needsBridge = options.scenarios.some((name) => BRIDGE_SCENARIOS.has(name));
    if (needsBridge && options.build) build();
    if (needsBridge) checkBuilt();
    checkEncoding();
    const busy = await machineBusy();
    const rig = await startRig(cleanup);
    const context: Context = { rig, options, cleanup, clock: new EpochClock() };
    const scenarios: ScenarioResult[] = [];
    const failures: string[] = [];
    await warmUp(rig, options.concurrency);
    for (const name of runOrder(options.scenarios)) {
      process.stdout.write(`running ${name}…\n`);
      try {
        const background = await waitForQuiet(QUIET_WAIT_MS);
        if (background > QUIET_THRESHOLD) {
          process.stdout.write(
            `  the machine is busy (${(100 * background).toFixed(0)}%) with other work; running anyway\n`,
          );
        }
        const measured = await RUNNERS[name](context);
        const again = scenarios.some((earlier) => earlier.name === name);
        const result = {
          ...measured,
          label: again ? `${measured.label}, again` : measured.label,
          backgroundBusy: background,
        };
        scenarios.push(result);
        process.stdout.write(
          `  ${result.jobs} jobs in ${result.seconds.toFixed(1)} s = ${result.jobsPerSecond.toFixed(0)} jobs/s\n`,
        );
      } catch (error) {
        const message = error instanceof Error ? (error.stack ?? error.message) : String(error);
        failures.push(`${name}: ${message}`);
        process.stderr.write(`  ${name} failed: ${message}\n`);
      }
    }
    const report: Report = {
      startedAt,
      totalSeconds: (performance.now() - runStarted) / 1000,
      machine: machineFacts(rig.versions, busy),
      options,
      scenarios,
      failures,
    };
    const file = writeReport(report, options.outDir);
    process.stdout.write(`${formatReport(report)}\nresults: ${file}\n`);
    return failures.length === 0 ? 0 : 1;
  } finally {
    await cleanup.run();
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    process.stderr.write(
      `bench: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
    );
    process.exitCode = 1;
  },
);
