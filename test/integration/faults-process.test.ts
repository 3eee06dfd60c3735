import assert from 'node:assert/strict';
import { after, afterEach, describe, it } from 'node:test';
import { BridgeProcess, type LogRecord } from '../support/bridge-process.ts';
import { type Environment, FAULT_RUNS, runLabel, startEnvironment } from '../support/environment.ts';
import {
  accountingTable,
  assertAccounted,
  finishAndAccount,
  jobTotal,
  publishScenario,
  waitForProgress,
} from '../support/fault-scenario.ts';
import { queueCounts, waitFor } from '../support/rabbit.ts';

/**
 * The bridge as a real process (dist/main.js) being killed, stopped and doubled while messages
 * stream through.
 */

const COUNT = 3000;

async function metricsOf(bridge: BridgeProcess): Promise<string> {
  const listening = await bridge.waitForLog((r) => r.msg === 'health and metrics endpoint listening');
  return (await fetch(`http://127.0.0.1:${String(listening.port)}/metrics`)).text();
}

function counter(metrics: string, name: string): number {
  return metrics
    .split('\n')
    .filter((line) => line.startsWith(`${name}{`) || line.startsWith(`${name} `))
    .reduce((sum, line) => sum + Number(line.slice(line.lastIndexOf(' ') + 1)), 0);
}

after(() => {
  console.log(`\nprocess faults, by scenario and ledger:\n${accountingTable()}\n`);
});

for (const run of FAULT_RUNS)
  describe(`bridge process faults mid-stream (${runLabel(run)})`, () => {
    const { mode, ledger } = run;
    const batch = mode === 'batch';
    let env: Environment | undefined;
    const bridges: BridgeProcess[] = [];

    afterEach(async () => {
      await Promise.all(bridges.map((b) => b.stop('SIGKILL')));
      bridges.length = 0;
      await env?.close();
      env = undefined;
    });

    function spawnBridge(config: Record<string, unknown>): BridgeProcess {
      const bridge = new BridgeProcess(config);
      bridges.push(bridge);
      return bridge;
    }

    it('(e) SIGKILLed three times mid-stream on a quorum queue, restarted each time: nothing lost', async (t) => {
      env = await startEnvironment('fault_e', { batch, ledger });
      const quorum = { 'x-queue-type': 'quorum' };
      // Debug level logs every outcome, so each redelivered message shows up with its count.
      const config = env.bridgeConfig({
        source: { queueArguments: quorum },
        top: { log: { level: 'debug' } },
      });
      const started = Date.now();
      const messages = await publishScenario(env, COUNT, `e-${mode}`, quorum);
      for (let kill = 1; kill <= 3; kill++) {
        const bridge = spawnBridge(config);
        await bridge.waitUntilReady();
        await waitForProgress(env, (COUNT * kill) / 5);
        const { signal } = await bridge.stop('SIGKILL');
        assert.equal(signal, 'SIGKILL');
      }
      const last = spawnBridge(config);
      await last.waitUntilReady();
      const report = await finishAndAccount(env, messages, started);
      assertAccounted(t, `(e) SIGKILL x3 (quorum queue), ${mode}`, report, ledger);
      // What a killed bridge held came back redelivered, with the quorum queue's x-delivery-count.
      const redelivered = bridges
        .flatMap((b) => b.logs)
        .filter((r: LogRecord) => r.redelivered === true && r.outcome);
      t.diagnostic(`outcomes logged for redelivered messages: ${redelivered.length}`);
      assert.ok(redelivered.length > 0, 'messages held by a killed bridge were redelivered');
      assert.ok(
        redelivered.every((r) => typeof r.priorDeliveries === 'number' && r.priorDeliveries >= 1),
        'each carries x-delivery-count',
      );
      assert.equal((await last.stop('SIGTERM')).code, 0);
    });

    it('(f) SIGTERM mid-stream: drains, exits 0, dead-letters nothing because of the shutdown, leaves nothing unacked', async (t) => {
      env = await startEnvironment('fault_f', { batch, ledger });
      const config = env.bridgeConfig();
      const started = Date.now();
      const messages = await publishScenario(env, COUNT, `f-${mode}`);
      const first = spawnBridge(config);
      await first.waitUntilReady();
      await waitForProgress(env, COUNT / 3);
      const { code } = await first.stop('SIGTERM');
      assert.equal(code, 0, `exit code after SIGTERM; stderr: ${first.stderr.join('')}`);
      const shutdownAt = first.logs.findIndex(
        (r) => r.msg === 'shutting down: draining in-flight deliveries',
      );
      assert.ok(shutdownAt >= 0);
      // A dead letter already on its way when the signal came (decided by its data) may be
      // confirmed after it; nothing valid is dead-lettered because of the shutdown.
      const invalid = new Set(messages.filter((m) => m.kind === 'invalid').map((m) => m.id));
      assert.deepEqual(
        first.logs
          .slice(shutdownAt)
          .filter((r) => r.outcome === 'dead_lettered' && !invalid.has(String(r.messageId))),
        [],
        'no valid message dead-lettered after the shutdown began',
      );
      const stopped = first.logs.find((r) => r.msg === 'stopped');
      t.diagnostic(
        `unfinished deliveries at exit: ${String(stopped?.unfinished)}; jobs so far ${await jobTotal(env)}`,
      );
      const counts = await queueCounts(env.queue);
      assert.equal(counts.unacked, 0, 'nothing left unacked once the process is gone');
      assert.ok(counts.ready > 0, 'the rest is back in the queue');

      const second = spawnBridge(config);
      await second.waitUntilReady();
      const report = await finishAndAccount(env, messages, started);
      assertAccounted(t, `(f) SIGTERM mid-stream, ${mode}`, report, ledger);
      assert.equal(report.duplicateJobs, 0, 'a graceful stop acks every job it wrote');
    });

    it('a second signal exits at once (code 1) and the held messages return to the queue', async () => {
      env = await startEnvironment('fault_f2', { batch, ledger });
      const current = env;
      const config = env.bridgeConfig();
      const bridge = spawnBridge({ ...config, shutdown: { graceMs: 60_000 } });
      await bridge.waitUntilReady();
      // Calls that never answer keep the drain waiting.
      current.server.injectFault({ kind: 'hang' });
      await current.broker.publish(current.queue, [
        { body: '{"entrypoint":"held"}' },
        { body: '{"entrypoint":"held"}' },
      ]);
      await waitFor(async () => (await queueCounts(current.queue)).unacked === 2, {
        message: 'two held deliveries',
      });
      bridge.child.kill('SIGTERM');
      await bridge.waitForLog((r) => r.msg === 'shutting down: draining in-flight deliveries');
      const forcedAt = Date.now();
      const { code } = await bridge.stop('SIGTERM');
      assert.equal(code, 1);
      assert.ok(Date.now() - forcedAt < 5000, 'the second signal does not wait for the drain');
      current.server.clearFaults();
      await waitFor(async () => {
        const counts = await queueCounts(current.queue);
        return counts.ready === 2 && counts.unacked === 0;
      });
    });

    it('(h) two replicas on one queue share the work with no loss and no duplicates', async (t) => {
      env = await startEnvironment('fault_h', { batch, ledger });
      const config = env.bridgeConfig();
      const replicas = [spawnBridge(config), spawnBridge(config)];
      await Promise.all(replicas.map((r) => r.waitUntilReady()));
      const started = Date.now();
      const messages = await publishScenario(env, COUNT, `h-${mode}`);
      const report = await finishAndAccount(env, messages, started);
      assertAccounted(t, `(h) two replicas, ${mode}`, report, ledger);
      assert.equal(report.duplicateJobs, 0);
      const enqueued = await Promise.all(
        replicas.map(async (r) => counter(await metricsOf(r), 'pgq_bridge_enqueued_total')),
      );
      t.diagnostic(`jobs enqueued per replica: ${enqueued.join(' / ')}`);
      assert.ok(
        enqueued.every((n) => n > 0),
        'both replicas did work',
      );
      const duplicates = await Promise.all(
        replicas.map(async (r) => counter(await metricsOf(r), 'pgq_bridge_duplicates_total')),
      );
      assert.equal(
        enqueued.reduce((a, b) => a + b, 0) + duplicates.reduce((a, b) => a + b, 0),
        report.jobRows + messages.filter((m) => m.kind === 'shared_key').length / 2,
        'every valid message acked exactly once across the replicas',
      );
    });
  });
