import { loadavg } from 'node:os';
import { drainScenario } from './bridge.ts';
import { autocannonScenario, bulkScenario, consumeScenario } from './ceilings.ts';
import { chartSvg } from './chart.ts';
import { Cleanup } from './cleanup.ts';
import { largeScenario } from './large.ts';
import { EpochClock, machineBusy, QUIET_THRESHOLD, waitForQuiet } from './measure.ts';
import { checkEncoding } from './messages.ts';
import {
  type BenchOptions,
  parseOptions,
  runOrder,
  type ScenarioName,
  type Step,
  USAGE,
  UsageError,
} from './options.ts';
import { formatReport, machineFacts, type Report, writeChart, writeReport } from './report.ts';
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

type Runner = (context: Context) => Promise<ScenarioResult | readonly ScenarioResult[]>;

const RUNNERS: Readonly<Record<ScenarioName, Runner>> = {
  database: databaseScenario,
  rpc: rpcScenario,
  autocannon: autocannonScenario,
  bulk: bulkScenario,
  consume: consumeScenario,
  naive: naiveScenario,
  drain: drainScenario,
  steady: steadyScenario,
  large: largeScenario,
  soak: soakScenario,
};

/** The scenarios that run dist/main.js, which must be built first. */
const BRIDGE_SCENARIOS: ReadonlySet<ScenarioName> = new Set(['drain', 'steady', 'large', 'soak']);

/** How long a scenario waits for other work on the machine to finish before it runs anyway. */
const QUIET_WAIT_MS = 10_000;

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
    const rig = await startRig(cleanup, options);
    const clock = new EpochClock();
    const scenarios: ScenarioResult[] = [];
    const failures: string[] = [];
    await warmUp(rig, options.concurrency);
    for (const step of runOrder(options)) {
      const { name } = step;
      const context: Context = { rig, options, cleanup, clock, step };
      process.stdout.write(
        `running ${name}${describeStep(step)}…  (load average ${loadavg()
          .map((v) => v.toFixed(2))
          .join(' ')})\n`,
      );
      try {
        const background = await waitForQuiet(QUIET_WAIT_MS);
        if (background > QUIET_THRESHOLD) {
          process.stdout.write(
            `  the machine is busy (${(100 * background).toFixed(0)}%) with other work; running anyway\n`,
          );
        }
        for (const measured of [await RUNNERS[name](context)].flat()) {
          const again = scenarios.some((earlier) => earlier.label === measured.label);
          const result = {
            ...measured,
            label: again ? `${measured.label}, again` : measured.label,
            backgroundBusy: background,
            loadAverage: loadavg().map((value) => Number(value.toFixed(2))),
          };
          scenarios.push(result);
          process.stdout.write(
            `  ${result.label}: ${result.jobs} jobs in ${result.seconds.toFixed(1)} s = ${result.jobsPerSecond.toFixed(0)} jobs/s\n`,
          );
        }
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
      endpoint: {
        kind: rig.endpoint.kind,
        url: rig.endpoint.url,
        version: rig.endpoint.version,
        description: rig.endpoint.description,
      },
      options,
      scenarios,
      failures,
    };
    const file = writeReport(report, options.outDir);
    const chart = writeChart(file, chartSvg(report));
    process.stdout.write(`${formatReport(report)}\nresults: ${file}\nchart: ${chart}\n`);
    return failures.length === 0 ? 0 : 1;
  } finally {
    await cleanup.run();
  }
}

function describeStep(step: Step): string {
  if (step.rate !== undefined) return ` at ${step.rate}/s`;
  if (step.payloadBytes !== undefined) return ` with ${step.payloadBytes}-byte payloads`;
  return step.name === 'consume' || step.name === 'drain' ? ` on a ${step.queueType} queue` : '';
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
