import {
  bridgeMicrosPerMessage,
  ceilingOf,
  type Limit,
  limitsOf,
  type Party,
  partyCpu,
  type Target,
  targetsOf,
} from './limit.ts';
import type { Report } from './report.ts';
import type { ScenarioResult } from './results.ts';
import { fixed, table } from './table.ts';

/** The printed sections about the limit: its parts, the drain against it, and the targets. */

export function formatLimits(report: Report): string[] {
  const { scenarios, options, machine } = report;
  const limits = limitsOf(scenarios, machine.cores, options.batch);
  const lines: string[] = [];
  if (limits.length > 0) {
    const callName = options.batch ? 'bulk ceiling' : 'direct-RPC ceiling';
    lines.push(
      '',
      `limit: everything but the bridge, measured in this run (a = bare consumer, b = ${callName})`,
      table(
        [
          'queue',
          'a jobs/s',
          'b jobs/s',
          '1/(1/a+1/b)',
          'CPU µs/job a+b',
          `${machine.cores} cores ÷ CPU`,
          'drain jobs/s',
          '÷ combined',
          '÷ CPU limit',
        ],
        limits.map((limit) => [
          limit.queueType,
          fixed(limit.consumer.jobsPerSecond, 0),
          fixed(limit.call.jobsPerSecond, 0),
          fixed(limit.combined, 0),
          `${fixed(limit.consumerCpu.microsPerJob, 1)} + ${fixed(limit.callCpu.microsPerJob, 1)}`,
          fixed(limit.cpuLimit, 0),
          fixed(limit.drain?.jobsPerSecond, 0),
          fixed(limit.drainOverCombined, 2),
          fixed(limit.drainOverCpuLimit, 2),
        ]),
      ),
      '  a: RabbitMQ + its amqplib client; b: endpoint + PostgreSQL + autocannon. The CPU limit leaves out',
      ...missingParties(limits),
      '  idle time; the combined rate counts every second each ceiling took, idle or not.',
      '',
      'where the drain spends more CPU per job than the limit (µs):',
      stands(limits),
    );
  }
  const clients = clientCpu(scenarios, options.batch);
  if (clients.length > 0)
    lines.push('', "the bridge's CPU per message against the load generators':", ...clients);
  const targets = targetsOf(scenarios, limits, options.batch);
  if (targets.length > 0) lines.push('', 'targets:', ...targets.map(formatTarget));
  return lines;
}

function missingParties(limits: readonly Limit[]): string[] {
  const missing = new Set(
    limits.flatMap((limit) => [...limit.consumerCpu.missing, ...limit.callCpu.missing]),
  );
  return missing.size === 0 ? [] : [`  (not measured, left out of the CPU sum: ${[...missing].join(', ')})`];
}

/** Per party: CPU per job in the two ceilings together against the drain on the same queue type. */
function stands(limits: readonly Limit[]): string {
  const rows = limits.flatMap((limit) => {
    const drain = limit.drain;
    if (drain === undefined) return [];
    const per = (result: ScenarioResult | readonly ScenarioResult[], party: Party): number =>
      partyCpu([result].flat(), [party]).microsPerJob;
    const consumer = limit.consumer.runs;
    const call = limit.call.runs;
    const parts: [string, number, number][] = [
      ['RabbitMQ', per(consumer, 'rabbitmq'), per(drain, 'rabbitmq')],
      ['endpoint', per(call, 'rpcServer'), per(drain, 'rpcServer')],
      ['PostgreSQL', per(call, 'postgres'), per(drain, 'postgres')],
      [
        'client (load generators / bridge)',
        per(consumer, 'harness') + per(call, 'harness'),
        per(drain, 'bridge'),
      ],
    ];
    return parts.map(([party, inLimit, inDrain]) => [
      `${limit.queueType}: ${party}`,
      fixed(inLimit, 1),
      fixed(inDrain, 1),
      `${inDrain >= inLimit ? '+' : ''}${fixed(inDrain - inLimit, 1)}`,
    ]);
  });
  return table(['queue: party', 'limit', 'drain', 'extra'], rows);
}

function clientCpu(scenarios: readonly ScenarioResult[], batch: boolean): string[] {
  const harness = (name: 'rpc' | 'autocannon' | 'consume' | 'bulk'): number | undefined => {
    const ceiling = ceilingOf(scenarios, name);
    return ceiling === undefined ? undefined : partyCpu(ceiling.runs, ['harness']).microsPerJob;
  };
  const refs = batch
    ? [
        `bare consumer's client ${fixed(harness('consume'), 1)}`,
        `autocannon per job in bulk calls ${fixed(harness('bulk'), 1)}`,
      ]
    : [
        `the bridge's own client in the direct-RPC ceiling ${fixed(harness('rpc'), 0)}`,
        `autocannon ${fixed(harness('autocannon'), 0)} per call`,
        `bare consumer's client ${fixed(harness('consume'), 1)}`,
      ];
  return scenarios
    .filter((result) => result.name === 'drain')
    .map((drain) => `  ${drain.label}: ${fixed(bridgeMicrosPerMessage(drain), 1)} µs; ${refs.join('; ')}`);
}

function formatTarget(target: Target): string {
  const verdict = target.met === undefined ? 'not measured' : target.met ? 'met' : 'NOT MET';
  return `  ${verdict.padEnd(12)} ${target.what}: ${fixed(target.value, 2)} (goal ${target.goal})`;
}
