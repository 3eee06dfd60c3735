import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_BATCH_MAX_SIZE } from '../src/config/delivery-schema.ts';
import { defaultPrefetch } from '../src/config/source-schema.ts';
import { type Ceiling, ceilingOf } from './limit.ts';
import { type CpuUse, QUIET_THRESHOLD } from './measure.ts';
import type { BenchOptions } from './options.ts';
import { formatLimits } from './report-limit.ts';
import type { ScenarioResult } from './results.ts';
import { fixed, perJob, table } from './table.ts';

export interface Machine {
  readonly cores: number;
  readonly cpuModel: string;
  readonly node: string;
  readonly postgres: string;
  readonly rabbitmq: string;
  /** The endpoint's own version (its Server header). */
  readonly endpoint: string;
  readonly loadAverage: readonly number[];
  /** Share of all cores busy during a 1 s sample before the run; other work skews every number. */
  readonly backgroundBusy: number;
}

export function machineFacts(
  versions: { postgres: string; rabbitmq: string; endpoint: string },
  backgroundBusy: number,
): Machine {
  return {
    cores: cpus().length,
    cpuModel: cpus()[0]?.model ?? 'unknown',
    node: process.version,
    postgres: versions.postgres,
    rabbitmq: versions.rabbitmq,
    endpoint: versions.endpoint,
    loadAverage: loadavg().map((value) => Number(value.toFixed(2))),
    backgroundBusy,
  };
}

export interface Report {
  readonly startedAt: string;
  readonly totalSeconds: number;
  readonly machine: Machine;
  readonly endpoint: {
    readonly kind: string;
    readonly url: string;
    readonly version: string;
    readonly description: string;
  };
  readonly options: BenchOptions;
  readonly scenarios: readonly ScenarioResult[];
  readonly failures: readonly string[];
}

/**
 * A row's rate over a ceiling's. The database ceiling has no ceiling above it, and the
 * steady run goes at the publisher's rate, so neither gets a ratio.
 */
function ratio(result: ScenarioResult, ceiling: Ceiling | undefined): string {
  if (ceiling === undefined) return '—';
  if (!RATED.has(result.name) || result.name === ceiling.name) return '—';
  return (result.jobsPerSecond / ceiling.jobsPerSecond).toFixed(2);
}

/** Rows that do the whole job at full speed; the ceilings of one side (bulk, consume) and paced runs are not. */
const RATED: ReadonlySet<string> = new Set(['rpc', 'autocannon', 'naive', 'drain', 'soak']);

function knownCpu(use: CpuUse): number {
  return [use.bridge, use.harness, use.rpcServer, use.postgres, use.rabbitmq].reduce<number>(
    (sum, value) => sum + (value ?? 0),
    0,
  );
}

/** Share of the whole machine used by processes outside the benchmark during a scenario. */
function otherShare(result: ScenarioResult, cores: number): number {
  const capacity = cores * result.cpu.wallMicros;
  return capacity > 0 ? Math.max(0, result.cpu.machineBusy - knownCpu(result.cpu)) / capacity : 0;
}

export function formatReport(report: Report): string {
  const { machine, scenarios, options } = report;
  const rpc = ceilingOf(scenarios, 'rpc');
  const database = ceilingOf(scenarios, 'database');
  const main = table(
    [
      'scenario',
      'jobs',
      'seconds',
      'jobs/s',
      '/direct-RPC',
      '/database',
      'p50 ms',
      'p99 ms',
      'p99.9 ms',
      'client CPU µs/job',
      'peak RSS MB',
      'load 1m',
    ],
    scenarios.map((result) => [
      result.label,
      String(result.jobs),
      fixed(result.seconds, 1),
      fixed(result.jobsPerSecond, 0),
      ratio(result, rpc),
      ratio(result, database),
      fixed(result.latency?.p50Ms, 2),
      fixed(result.latency?.p99Ms, 2),
      fixed(result.latency?.p999Ms, 2),
      fixed(result.clientCpuMicrosPerJob, 0),
      result.peakRssBytes === undefined ? '—' : (result.peakRssBytes / 1024 / 1024).toFixed(0),
      fixed(result.loadAverage?.[0], 2),
    ]),
  );
  const cpu = table(
    ['CPU µs per job', 'bridge', 'harness', 'RPC server', 'PostgreSQL', 'RabbitMQ', 'other', 'machine busy'],
    scenarios.map((result) => {
      const { cpu: use } = result;
      const known = knownCpu(use);
      const cores = machine.cores * use.wallMicros;
      return [
        result.label,
        perJob(use.bridge, result.jobs),
        perJob(use.harness, result.jobs),
        perJob(use.rpcServer, result.jobs),
        perJob(use.postgres, result.jobs),
        perJob(use.rabbitmq, result.jobs),
        perJob(Math.max(0, use.machineBusy - known), result.jobs),
        cores > 0 ? `${((100 * use.machineBusy) / cores).toFixed(0)}%` : '—',
      ];
    }),
  );
  const derived: string[] = [];
  const drain = scenarios.find((result) => result.name === 'drain');
  const rpcP50 = rpc?.runs[0]?.latency?.p50Ms;
  // In batch mode a slot carries a whole batch, so the per-message cycle says nothing.
  if (drain !== undefined && drain.jobsPerSecond > 0 && rpcP50 !== undefined && !options.batch) {
    // Little's law: with every slot busy, each one finishes a message every concurrency / rate.
    const cycleMs = (1000 * options.concurrency) / drain.jobsPerSecond;
    derived.push(
      `  ${drain.label}: each of the ${options.concurrency} slots finishes a message every ${cycleMs.toFixed(2)} ms; ` +
        `a direct RPC call takes ${rpcP50.toFixed(2)} ms (p50)`,
    );
  }
  const latencyKinds = scenarios.flatMap((result) =>
    result.latency === undefined ? [] : [`${result.label}: ${result.latency.what}`],
  );
  const notes = scenarios.flatMap((result) => [
    ...((result.backgroundBusy ?? 0) > QUIET_THRESHOLD
      ? [
          `  ${result.label}: started while ${(100 * (result.backgroundBusy ?? 0)).toFixed(0)}% of the machine was busy with other work`,
        ]
      : []),
    ...(otherShare(result, machine.cores) > QUIET_THRESHOLD
      ? [
          `  ${result.label}: SKEWED: other processes used ${(100 * otherShare(result, machine.cores)).toFixed(0)}% ` +
            'of the machine while it ran',
        ]
      : []),
    ...result.notes.map((note) => `  ${result.label}: ${note}`),
  ]);
  const prefetch =
    options.prefetch ??
    `${defaultPrefetch(options.concurrency, { enabled: options.batch, maxSize: DEFAULT_BATCH_MAX_SIZE })} (bridge default)`;
  const lines = [
    '',
    `machine: ${machine.cores} cores (${machine.cpuModel}), Node ${machine.node}, PostgreSQL ${machine.postgres}, RabbitMQ ${machine.rabbitmq}`,
    `endpoint: ${report.endpoint.description}, answering as ${report.endpoint.version} at ${report.endpoint.url}`,
    `load average at start ${machine.loadAverage.join(' ')}, background busy ${(100 * machine.backgroundBusy).toFixed(0)}% of all cores` +
      (machine.backgroundBusy > QUIET_THRESHOLD ? '  ← other work was running; numbers are skewed' : ''),
    `${options.batch ? 'batch mode' : 'single mode'}, concurrency ${options.concurrency}, prefetch ${prefetch}, ` +
      `${options.persistent ? 'persistent' : 'transient'} messages`,
    '',
    main,
    '  client CPU = the bridge in drain, steady and soak; this process, as the client, in the others.',
    ...(rpc !== undefined && rpc.runs.length > 1
      ? [
          `  /direct-RPC = over the mean of the ceiling's ${rpc.runs.length} runs (${rpc.runs.map((run) => run.jobsPerSecond.toFixed(0)).join(', ')} jobs/s): ` +
            "it runs again after the drain, so a drift in the machine's speed does not pass for the bridge's overhead.",
        ]
      : []),
    ...(latencyKinds.length > 0 ? [`  p50/p99 of: ${latencyKinds.join('; ')}.`] : []),
    '',
    cpu,
    '  harness = this process: the load generators, the naive consumer, publishing and polling;',
    '  other = the kernel and every other process (a large value means the machine was not quiet).',
    ...formatLimits(report),
    ...(notes.length + derived.length > 0 ? ['', 'notes:', ...notes, ...derived] : []),
    ...(report.failures.length > 0
      ? ['', 'FAILED:', ...report.failures.map((failure) => `  ${failure}`)]
      : []),
    '',
    `total run time ${report.totalSeconds.toFixed(0)} s`,
  ];
  return lines.join('\n');
}

/** The chart goes next to the JSON, with the same name. */
export function writeChart(jsonFile: string, svg: string): string {
  const file = jsonFile.replace(/\.json$/, '.svg');
  writeFileSync(file, svg);
  return file;
}

export function writeReport(report: Report, outDir: string): string {
  mkdirSync(outDir, { recursive: true });
  const file = join(outDir, `${report.startedAt.replaceAll(':', '-')}.json`);
  writeFileSync(file, `${JSON.stringify(report, null, 2)}\n`);
  return file;
}
