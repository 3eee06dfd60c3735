import assert from 'node:assert/strict';
import { after, afterEach, describe, it } from 'node:test';
import type { App } from '../../src/app.ts';
import { metricValue, startApp } from '../support/app.ts';
import { type Environment, FAULT_RUNS, runLabel, startEnvironment } from '../support/environment.ts';
import {
  accountingTable,
  assertAccounted,
  finishAndAccount,
  publishScenario,
  waitForProgress,
} from '../support/fault-scenario.ts';
import { BATCH_INSTALL_SQL, INSTALL_SQL, LEDGER_INSTALL_SQL, runPsql } from '../support/pg.ts';
import { waitFor } from '../support/rabbit.ts';

/**
 * Faults on the RPC side while a few thousand messages stream through: the endpoint goes away,
 * answers 503/504, answers after committing but with a broken connection, or loses the function.
 * Each ends with an exact accounting by message id.
 */

const COUNT = 3000;

after(() => {
  console.log(`\nendpoint faults, by scenario and ledger:\n${accountingTable()}\n`);
});

for (const run of FAULT_RUNS)
  describe(`RPC endpoint faults mid-stream (${runLabel(run)})`, () => {
    const { mode, ledger } = run;
    const batch = mode === 'batch';
    let env: Environment | undefined;
    let app: App | undefined;

    afterEach(async () => {
      await app?.stop();
      await env?.close();
      app = undefined;
      env = undefined;
    });

    it('(a) endpoint stopped for ~20 s, then back: intake pauses, nothing is lost or dead-lettered wrongly', async (t) => {
      env = await startEnvironment('fault_a', { batch, ledger });
      const started = Date.now();
      const messages = await publishScenario(env, COUNT, `a-${mode}`);
      ({ app } = await startApp(env.bridgeConfig({ retry: { initialDelayMs: 100, maxDelayMs: 2000 } })));
      await waitForProgress(env, COUNT / 4);

      await env.server.stop();
      const running = app;
      await waitFor(() => !running.ready, { timeoutMs: 10_000, message: 'the bridge to report not ready' });
      assert.equal(running.status().intakePaused, true);
      await new Promise((resolve) => setTimeout(resolve, 20_000));
      assert.equal(running.ready, false, 'still not ready while the endpoint is down');
      await env.server.start();
      await waitFor(() => running.ready, { timeoutMs: 15_000, message: 'the bridge to recover' });

      const report = await finishAndAccount(env, messages, started);
      assertAccounted(t, `(a) endpoint down 20 s, ${mode}`, report, ledger);
      assert.ok((await metricValue(running, 'pgq_bridge_retries_total', { kind: 'transient' })) > 0);
    });

    it('(b) endpoint answering 503 and 504 for a while, and resets after commit: retried, duplicates only without a dedupe key', async (t) => {
      env = await startEnvironment('fault_b', { batch, ledger });
      const started = Date.now();
      const messages = await publishScenario(env, COUNT, `b-${mode}`);
      ({ app } = await startApp(env.bridgeConfig({ retry: { initialDelayMs: 50, maxDelayMs: 1000 } })));
      await waitForProgress(env, COUNT / 5);

      const clear503 = env.server.injectFault({ kind: 'PGRST000' });
      await new Promise((resolve) => setTimeout(resolve, 3000));
      clear503();
      const clear504 = env.server.injectFault({ kind: 'PGRST003' });
      await new Promise((resolve) => setTimeout(resolve, 3000));
      clear504();
      // Committed, then the connection dies before the answer: the ambiguous case.
      env.server.injectFault({ kind: 'reset', when: 'after-commit', times: 40 });

      const report = await finishAndAccount(env, messages, started);
      assertAccounted(t, `(b) 503/504 and resets after commit, ${mode}`, report, ledger);
      const running = app;
      assert.ok(
        (await metricValue(running, 'pgq_bridge_ambiguous_retries_total')) > 0,
        'ambiguous retries counted',
      );
      assert.ok((env.server.stats().byStatus['503'] ?? 0) > 0);
      assert.ok((env.server.stats().byStatus['504'] ?? 0) > 0);
    });

    it('(g) function dropped (404) then recreated: held, never dead-lettered, resumed', async (t) => {
      env = await startEnvironment('fault_g', { batch, ledger });
      const current = env;
      const started = Date.now();
      const messages = await publishScenario(env, COUNT, `g-${mode}`);
      ({ app } = await startApp(env.bridgeConfig({ retry: { initialDelayMs: 100, maxDelayMs: 1000 } })));
      await waitForProgress(env, COUNT / 4);

      // The function this mode calls goes away.
      const called = `${batch ? 'fn_pgqueuer_enqueue_batch' : 'fn_pgqueuer_enqueue'}${ledger ? '_once' : ''}`;
      await current.db.pool.query(`DROP FUNCTION ${called}`);
      await current.db.pool.query("NOTIFY pgrst, 'reload schema'");
      const running = app;
      await waitFor(() => !running.ready, { timeoutMs: 10_000, message: 'the bridge to report not ready' });
      await new Promise((resolve) => setTimeout(resolve, 5000));
      assert.equal(running.ready, false);
      await runPsql(current.db.name, ledger ? LEDGER_INSTALL_SQL : batch ? BATCH_INSTALL_SQL : INSTALL_SQL);
      await current.db.pool.query("NOTIFY pgrst, 'reload schema'");

      const report = await finishAndAccount(current, messages, started);
      assertAccounted(t, `(g) function dropped and recreated, ${mode}`, report, ledger);
      assert.ok((await metricValue(running, 'pgq_bridge_retries_total', { kind: 'endpoint_fault' })) > 0);
    });
  });
