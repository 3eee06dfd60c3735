import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createLogger } from '../../src/log.ts';
import { LedgerMaintenance, type MaintenanceCaller } from '../../src/postgrest/ledger-maintenance.ts';
import { LogSink } from '../support/app.ts';

/** Answers each function with the given HTTP status and body, and records the calls. */
function caller(answers: Record<string, [number, string]>): MaintenanceCaller & { calls: string[] } {
  const calls: string[] = [];
  return {
    calls,
    async call(fn, body, interpret) {
      calls.push(`${fn} ${body}`);
      const [status, text] = answers[fn] ?? [404, '{"code":"PGRST202","message":"not found"}'];
      return interpret(status, text, undefined) as never;
    },
  };
}

describe('LedgerMaintenance', () => {
  it('prepares, then prunes, and logs what each did', async () => {
    const logs = new LogSink();
    const rpc = caller({ fn_ledger_prepare: [200, '1'], fn_ledger_prune: [200, '2'] });
    await new LedgerMaintenance(
      rpc,
      { table: 'ledger', intervalMs: 60_000 },
      createLogger('debug', logs),
    ).run();
    assert.deepEqual(rpc.calls, ['fn_ledger_prepare {}', 'fn_ledger_prune {}']);
    assert.deepEqual(
      logs.records.map((r) => [r.function, r.outcome, r.partitions]),
      [
        ['fn_ledger_prepare', 'ledger_maintenance', 1],
        ['fn_ledger_prune', 'ledger_maintenance', 2],
      ],
    );
  });

  it('logs a failed step with its kind and code, and still runs the other', async () => {
    const logs = new LogSink();
    const rpc = caller({
      fn_ledger_prepare: [500, '{"code":"55P03","message":"canceling statement due to lock timeout"}'],
      fn_ledger_prune: [200, '0'],
    });
    await new LedgerMaintenance(
      rpc,
      { table: 'ledger', intervalMs: 60_000 },
      createLogger('debug', logs),
    ).run();
    const failed = logs.find((r) => r.outcome === 'ledger_maintenance_failed');
    assert.deepEqual(failed && [failed.function, failed.kind, failed.httpStatus, failed.code], [
      'fn_ledger_prepare',
      'http_error',
      500,
      '55P03',
    ]);
    assert.equal(rpc.calls.length, 2);
  });

  it('runs at start and on its interval until stopped', async () => {
    const rpc = caller({ fn_l_prepare: [200, '0'], fn_l_prune: [200, '0'] });
    const maintenance = new LedgerMaintenance(
      rpc,
      { table: 'l', intervalMs: 20 },
      createLogger('info', new LogSink()),
    );
    maintenance.start();
    await new Promise((resolve) => setTimeout(resolve, 150));
    await maintenance.stop();
    const runs = rpc.calls.length / 2;
    assert.ok(runs >= 2, `${runs} runs`);
    await new Promise((resolve) => setTimeout(resolve, 60));
    assert.equal(rpc.calls.length / 2, runs, 'no run after stop');
  });

  it('treats a 2xx that is not a count as a bad response', async () => {
    const logs = new LogSink();
    const rpc = caller({ fn_l_prepare: [200, '"done"'], fn_l_prune: [200, '0'] });
    await new LedgerMaintenance(rpc, { table: 'l', intervalMs: 60_000 }, createLogger('debug', logs)).run();
    assert.equal(logs.find((r) => r.outcome === 'ledger_maintenance_failed')?.kind, 'bad_response');
  });
});
