import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ceilingOf } from '../../bench/limit.ts';
import { parseOptions, runOrder, type ScenarioName } from '../../bench/options.ts';
import { formatReport } from '../../bench/report.ts';
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

const plan = (scenarios: ScenarioName[], queueTypes: ('classic' | 'quorum')[] = ['classic']) =>
  runOrder({ scenarios, queueTypes, rates: [1000, 5000], largeSizes: [65536] }).map((step) =>
    [step.name, step.queueType, step.rate ?? step.payloadBytes]
      .filter((part) => part !== undefined)
      .join(' '),
  );

describe('runOrder', () => {
  it('runs the direct-RPC ceiling again right after the drain', () => {
    assert.deepEqual(plan(['database', 'rpc', 'naive', 'drain']), [
      'database classic',
      'rpc classic',
      'naive classic',
      'drain classic',
      'rpc classic',
    ]);
  });

  it('runs each scenario once when there is no drain or no direct-RPC ceiling', () => {
    assert.deepEqual(plan(['rpc', 'naive']), ['rpc classic', 'naive classic']);
    assert.deepEqual(plan(['database', 'drain']), ['database classic', 'drain classic']);
  });

  it('runs the bare consumer and the drain per queue type, steady per rate, large per size', () => {
    assert.deepEqual(plan(['rpc', 'consume', 'drain', 'steady', 'large'], ['classic', 'quorum']), [
      'rpc classic',
      'consume classic',
      'consume quorum',
      'drain classic',
      'drain quorum',
      'rpc classic',
      'steady classic 1000',
      'steady classic 5000',
      'large classic 65536',
    ]);
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
        endpoint: 'postgrest/10.1.2',
        loadAverage: [0, 0, 0],
        backgroundBusy: 0,
      },
      endpoint: {
        kind: 'compat',
        url: 'http://127.0.0.1:1',
        version: 'postgrest/10.1.2',
        description: 'test',
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
