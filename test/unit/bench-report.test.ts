import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseOptions, runOrder, type ScenarioName } from '../../bench/options.ts';
import { ceilingOf, formatReport } from '../../bench/report.ts';
import type { ScenarioResult } from '../../bench/results.ts';

function result(name: ScenarioName, jobsPerSecond: number, label: string = name): ScenarioResult {
  return {
    name,
    label,
    jobs: jobsPerSecond * 10,
    seconds: 10,
    jobsPerSecond,
    cpu: {
      bridge: undefined,
      harness: 0,
      rpcServer: undefined,
      postgres: undefined,
      rabbitmq: undefined,
      machineBusy: 0,
      wallMicros: 10_000_000,
    },
    notes: [],
  };
}

describe('runOrder', () => {
  it('runs the direct-RPC ceiling again right after the drain', () => {
    assert.deepEqual(runOrder(['database', 'rpc', 'naive', 'drain', 'steady']), [
      'database',
      'rpc',
      'naive',
      'drain',
      'rpc',
      'steady',
    ]);
  });

  it('runs each scenario once when there is no drain or no direct-RPC ceiling', () => {
    assert.deepEqual(runOrder(['rpc', 'steady']), ['rpc', 'steady']);
    assert.deepEqual(runOrder(['database', 'drain']), ['database', 'drain']);
  });
});

describe('ceilingOf', () => {
  it('is the mean of the runs of that name', () => {
    const ceiling = ceilingOf([result('rpc', 3000), result('drain', 2700), result('rpc', 3400)], 'rpc');
    assert.equal(ceiling?.jobsPerSecond, 3200);
    assert.equal(ceiling?.runs.length, 2);
  });

  it('leaves out runs that did no work, and is absent without any', () => {
    assert.equal(ceilingOf([result('rpc', 0), result('rpc', 3000)], 'rpc')?.jobsPerSecond, 3000);
    assert.equal(ceilingOf([result('rpc', 0)], 'rpc'), undefined);
    assert.equal(ceilingOf([result('drain', 2700)], 'rpc'), undefined);
  });
});

describe('formatReport', () => {
  it("rates the drain against the mean of the ceiling's runs, and says so", () => {
    const options = parseOptions([], {});
    assert.notEqual(options, 'help');
    if (options === 'help') return;
    const text = formatReport({
      startedAt: '2026-01-01T00:00:00.000Z',
      totalSeconds: 100,
      machine: {
        cores: 2,
        cpuModel: 'test',
        node: 'v20',
        postgres: '15',
        rabbitmq: '3.10',
        loadAverage: [0, 0, 0],
        backgroundBusy: 0,
      },
      options,
      scenarios: [
        result('database', 5000, 'database ceiling'),
        result('rpc', 3000, 'direct-RPC ceiling'),
        result('drain', 2880, 'bridge drain'),
        result('rpc', 3400, 'direct-RPC ceiling, again'),
      ],
      failures: [],
    });
    const drainRow = text.split('\n').find((line) => line.startsWith('bridge drain '));
    // 2880 / mean(3000, 3400) = 0.90; against the first run alone it would be 0.96.
    assert.match(drainRow ?? '', /\s0\.90\s+0\.58\s/);
    assert.match(text, /over the mean of the ceiling's 2 runs \(3000, 3400 jobs\/s\)/);
  });
});
