import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { chartSvg, escapeXml, niceTicks } from '../../bench/chart.ts';
import { versionFromHelp } from '../../bench/endpoint.ts';
import {
  combinedRate,
  cpuBoundRate,
  limitsOf,
  partyCpu,
  rssOverBudget,
  targetsOf,
} from '../../bench/limit.ts';
import type { CpuUse } from '../../bench/measure.ts';
import { parseOptions, type QueueType, type ScenarioName, UsageError } from '../../bench/options.ts';
import { isOurPostgresProcess } from '../../bench/procs.ts';
import { hotFunctions } from '../../bench/profile.ts';
import type { ScenarioResult } from '../../bench/results.ts';
import { keptUp } from '../../bench/steady.ts';

const SECONDS = 10;

/** A result of `jobsPerSecond` over 10 s, with `cpuPerJob` µs per job for each named party. */
function result(
  name: ScenarioName,
  jobsPerSecond: number,
  extra: Partial<ScenarioResult> = {},
  cpuPerJob: Partial<Record<keyof CpuUse, number>> = {},
): ScenarioResult {
  const jobs = jobsPerSecond * SECONDS;
  const cpu = (party: keyof CpuUse): number | undefined =>
    cpuPerJob[party] === undefined ? undefined : (cpuPerJob[party] ?? 0) * jobs;
  return {
    name,
    label: name,
    jobs,
    seconds: SECONDS,
    jobsPerSecond,
    cpu: {
      bridge: cpu('bridge'),
      harness: cpu('harness') ?? 0,
      rpcServer: cpu('rpcServer'),
      postgres: cpu('postgres'),
      rabbitmq: cpu('rabbitmq'),
      machineBusy: 0,
      wallMicros: SECONDS * 1e6,
    },
    notes: [],
    ...extra,
  };
}

const on = (queueType: QueueType): Partial<ScenarioResult> => ({ queueType });

describe('combinedRate', () => {
  it('is the rate of doing both jobs one after the other on the same cores', () => {
    // 1/40000 s + 1/20000 s = 75 µs per job.
    assert.equal(Math.round(combinedRate(40_000, 20_000)), 13_333);
    assert.equal(combinedRate(10_000, 10_000), 5000);
  });

  it('is 0 when either side did nothing', () => {
    assert.equal(combinedRate(0, 20_000), 0);
    assert.equal(combinedRate(20_000, 0), 0);
  });
});

describe('cpuBoundRate', () => {
  it('is the cores over the CPU per job', () => {
    assert.equal(cpuBoundRate(2, 100), 20_000);
    assert.equal(cpuBoundRate(2, 0), 0);
  });
});

describe('partyCpu', () => {
  it('sums the named parties over all runs per job, and lists the ones not measured', () => {
    const runs = [
      result('rpc', 1000, {}, { harness: 100, postgres: 300 }),
      result('rpc', 3000, {}, { harness: 200, postgres: 300 }),
    ];
    // (100·10k + 200·30k) / 40k = 175 harness, plus 300 postgres.
    const cpu = partyCpu(runs, ['harness', 'postgres', 'rpcServer']);
    assert.equal(cpu.microsPerJob, 475);
    assert.deepEqual(cpu.missing, ['rpcServer']);
  });
});

describe('limitsOf', () => {
  const scenarios = [
    result('bulk', 20_000, {}, { rpcServer: 10, postgres: 40, harness: 5, rabbitmq: 100 }),
    result('consume', 40_000, on('classic'), { rabbitmq: 25, harness: 5, postgres: 1000 }),
    result('consume', 80_000, on('quorum'), { rabbitmq: 10, harness: 5 }),
    result('drain', 10_000, on('classic'), { bridge: 20 }),
    result('drain', 12_000, on('quorum'), { bridge: 18 }),
    result('rpc', 2000, {}, { harness: 130 }),
  ];

  it('combines the bare consumer of each queue type with the bulk ceiling in batch mode', () => {
    const [classic, quorum] = limitsOf(scenarios, 2, true);
    assert.equal(classic?.queueType, 'classic');
    assert.equal(Math.round(classic?.combined ?? 0), 13_333);
    assert.equal(Math.round(quorum?.combined ?? 0), 16_000);
    assert.equal(classic?.drainOverCombined?.toFixed(2), '0.75');
    assert.equal(quorum?.drainOverCombined?.toFixed(2), '0.75');
  });

  it("counts each ceiling's own parties only: the broker in the consumer, the endpoint and database in the bulk calls", () => {
    const [classic] = limitsOf(scenarios, 2, true);
    // 25 + 5 (not the consumer run's PostgreSQL, nor the bulk run's RabbitMQ), then 10 + 40 + 5.
    assert.equal(classic?.consumerCpu.microsPerJob, 30);
    assert.equal(classic?.callCpu.microsPerJob, 55);
    assert.equal(Math.round(classic?.cpuLimit ?? 0), Math.round(2e6 / 85));
    assert.equal(classic?.drainOverCpuLimit?.toFixed(3), (10_000 / (2e6 / 85)).toFixed(3));
  });

  it('uses the direct-RPC ceiling in single mode', () => {
    const [classic] = limitsOf(scenarios, 2, false);
    assert.equal(classic?.call.name, 'rpc');
    assert.equal(Math.round(classic?.combined ?? 0), Math.round(1 / (1 / 40_000 + 1 / 2000)));
  });

  it('is empty without the call ceiling, and has no drain ratio without a drain', () => {
    assert.deepEqual(
      limitsOf(
        scenarios.filter((r) => r.name !== 'bulk'),
        2,
        true,
      ),
      [],
    );
    const [classic] = limitsOf(
      scenarios.filter((r) => r.name !== 'drain'),
      2,
      true,
    );
    assert.equal(classic?.drainOverCombined, undefined);
  });
});

describe('targetsOf', () => {
  it('checks the batch targets: ratio to the limit, bridge CPU, steady p99, RSS over the budget', () => {
    const scenarios = [
      result('bulk', 20_000, {}, { harness: 1 }),
      result('consume', 40_000, on('classic'), { harness: 1 }),
      result('drain', 12_000, { ...on('classic'), label: 'drain', workCpuMicrosPerJob: 9 }, { bridge: 12 }),
      result('steady', 5000, {
        rate: 5000,
        latency: { p50Ms: 5, p99Ms: 30, maxMs: 50, what: 'publish → job row' },
      }),
      result('large', 100, {
        label: 'large',
        peakRssBytes: 300,
        inFlightBudgetBytes: 100,
        details: { idleRssBytes: 80 },
      }),
    ];
    const targets = targetsOf(scenarios, limitsOf(scenarios, 2, true), true);
    const verdicts = targets.map((t) => [
      t.what,
      t.value === undefined ? undefined : Number(t.value.toFixed(2)),
      t.met,
    ]);
    assert.deepEqual(verdicts, [
      ['batch drain ÷ combined limit, classic queue', 0.9, true],
      ['bridge CPU µs per message, drain', 9, true],
      ['steady 5000/s p99 publish → job row, ms', 30, false],
      ['large: RSS growth ÷ byte budget', 2.2, false],
    ]);
  });

  it("rates single mode's bridge CPU against its own client's CPU per call", () => {
    const scenarios = [
      result('rpc', 2000, {}, { harness: 125 }),
      result('rpc', 2000, {}, { harness: 135 }),
      result('drain', 1800, { label: 'drain' }, { bridge: 159 }),
    ];
    const [target] = targetsOf(scenarios, [], false);
    assert.equal(target?.value?.toFixed(3), (159 / 130).toFixed(3));
    assert.equal(target?.met, false);
  });

  it('reports a target it could not measure as such, not as met', () => {
    const [, , steady] = targetsOf([result('drain', 1, on('classic'))], [], true);
    assert.equal(steady?.value, undefined);
    assert.equal(steady?.met, undefined);
  });
});

describe('rssOverBudget', () => {
  it('is undefined without an idle reading', () => {
    assert.equal(rssOverBudget(result('large', 1, { peakRssBytes: 10, inFlightBudgetBytes: 5 })), undefined);
  });
});

describe('keptUp', () => {
  const run = { goal: 5000, publishRate: 5000, published: 100_000, jobs: 100_000, lagSeconds: 0.2 };
  it('needs every job, a short lag, and the publisher at the rate', () => {
    assert.equal(keptUp(run), true);
    assert.equal(keptUp({ ...run, jobs: 99_999 }), false);
    assert.equal(keptUp({ ...run, lagSeconds: 3 }), false);
    assert.equal(keptUp({ ...run, publishRate: 4000 }), false);
  });
});

describe('versionFromHelp', () => {
  it("reads PostgREST 10's --help header, which is where its version is", () => {
    assert.equal(versionFromHelp('PostgREST 10.1.2 (4b8e0b0)\nUsage: postgrest [-e|--example]'), '10.1.2');
    assert.equal(versionFromHelp('Usage: something else'), undefined);
  });
});

describe('parseOptions', () => {
  it('defaults to the compat endpoint, both queue types, and per-mode rates and scenarios', () => {
    const single = parseOptions([], {});
    const batch = parseOptions(['--batch'], {});
    assert.ok(single !== 'help' && batch !== 'help');
    assert.deepEqual(single.endpoint, { kind: 'compat' });
    assert.deepEqual(single.queueTypes, ['classic', 'quorum']);
    assert.deepEqual(single.rates, [1000]);
    assert.deepEqual(batch.rates, [1000, 5000, 10_000]);
    assert.ok(!single.scenarios.includes('bulk') && batch.scenarios.includes('bulk'));
    assert.ok(batch.scenarios.includes('large'));
  });

  it('takes a URL endpoint only with the database behind it', () => {
    assert.throws(() => parseOptions(['--endpoint', 'http://pg.example:3000/'], {}), UsageError);
    const options = parseOptions(
      ['--endpoint', 'http://pg.example:3000/', '--endpoint-db', 'postgres:///x'],
      {},
    );
    assert.ok(options !== 'help');
    assert.deepEqual(options.endpoint, { kind: 'url', url: 'http://pg.example:3000' });
    assert.equal(options.endpointSetup, false);
    assert.throws(() => parseOptions(['--endpoint', 'ftp://x'], {}), UsageError);
  });

  it('refuses unknown queue types and malformed rate lists', () => {
    assert.throws(() => parseOptions(['--queue-types', 'stream'], {}), UsageError);
    assert.throws(() => parseOptions(['--rates', '1000,fast'], {}), UsageError);
  });
});

describe('hotFunctions', () => {
  it("sums each function's self time over its nodes, from the gaps between samples", () => {
    const frame = (functionName: string) => ({ functionName, url: '', lineNumber: 0 });
    const profile = {
      nodes: [
        { id: 1, callFrame: frame('(root)') },
        { id: 2, callFrame: frame('decode') },
        { id: 3, callFrame: frame('decode') },
        { id: 4, callFrame: frame('(idle)') },
      ],
      samples: [2, 3, 4, 2],
      timeDeltas: [0, 10, 30, 60],
    };
    // Sample i lasts until sample i + 1: decode 10 + 30 + 0 (last), idle 60.
    assert.deepEqual(
      hotFunctions(profile, 5).map((f) => [f.name, f.selfMicros, f.share]),
      [
        ['(idle)', 60, 0.6],
        ['decode', 40, 0.4],
      ],
    );
  });
});

describe('chart', () => {
  it('picks round axis steps', () => {
    assert.deepEqual(niceTicks(23_000), [0, 5000, 10_000, 15_000, 20_000, 25_000]);
    assert.deepEqual(niceTicks(0), [0]);
  });

  it('escapes labels', () => {
    assert.equal(escapeXml('a < b & "c"'), 'a &#60; b &#38; &#34;c&#34;');
  });

  it('draws a bar per scenario, a limit line per queue type and the latency points', () => {
    const options = parseOptions(['--batch'], {});
    assert.ok(options !== 'help');
    const svg = chartSvg({
      startedAt: '2026-01-01T00:00:00.000Z',
      totalSeconds: 1,
      machine: {
        cores: 2,
        cpuModel: 'test',
        node: 'v20',
        postgres: '15',
        rabbitmq: '3.10',
        endpoint: 'postgrest/10.1.2',
        loadAverage: [1, 1, 1],
        backgroundBusy: 0,
      },
      endpoint: { kind: 'compat', url: 'http://x', version: 'postgrest/10.1.2', description: 'test' },
      options,
      scenarios: [
        result('bulk', 20_000),
        result('consume', 40_000, on('classic')),
        result('drain', 12_000, on('classic')),
        result('steady', 1000, {
          rate: 1000,
          latency: { p50Ms: 2, p99Ms: 8, p999Ms: 12, maxMs: 20, what: 'x' },
        }),
        result('steady', 5000, {
          rate: 5000,
          keptUp: false,
          latency: { p50Ms: 3, p99Ms: 9, maxMs: 30, what: 'x' },
        }),
      ],
      failures: [],
    });
    assert.match(svg, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
    assert.equal(svg.match(/<rect x=/g)?.length, 5);
    assert.match(svg, /limit, classic: 13333/);
    assert.equal(svg.match(/<polyline/g)?.length, 3);
    assert.match(svg, /fell behind/);
  });
});

describe('isOurPostgresProcess', () => {
  it("counts the run's backends and the shared helpers, not other databases' backends", () => {
    assert.equal(isOurPostgresProcess('postgres: 15/main: checkpointer', 'bench_db'), true);
    assert.equal(isOurPostgresProcess('postgres: walwriter', 'bench_db'), true);
    assert.equal(
      isOurPostgresProcess('postgres: 15/main: pgqapi bench_db 127.0.0.1(5000) idle', 'bench_db'),
      true,
    );
    assert.equal(isOurPostgresProcess('postgres: 15/main: autovacuum worker bench_db', 'bench_db'), true);
    assert.equal(
      isOurPostgresProcess('postgres: 15/main: postgres other_db [local] idle', 'bench_db'),
      false,
    );
    assert.equal(isOurPostgresProcess('/usr/lib/postgresql/15/bin/postgres -D x', 'bench_db'), false);
  });
});
