import assert from 'node:assert/strict';
import { after, afterEach, before, describe, it } from 'node:test';
import type { App } from '../../src/app.ts';
import { type LogSink, metricValue, startApp } from '../support/app.ts';
import {
  type Environment,
  FAULT_RUNS,
  type FaultRun,
  runLabel,
  startEnvironment,
} from '../support/environment.ts';
import {
  accountingTable,
  assertAccounted,
  finishAndAccount,
  publishScenario,
  waitForProgress,
} from '../support/fault-scenario.ts';
import { waitFor } from '../support/rabbit.ts';
import { type PrivateNode, startPrivateNode } from '../support/rabbit-node.ts';

/**
 * Broker faults, on a private RabbitMQ node so the shared broker other test files use stays up:
 * connections closed by the operator, the broker restarted, a consumer cancelled because its
 * queue was deleted, and deliveries held close to the consumer timeout.
 */

const COUNT = 3000;

describe('broker faults mid-stream (private RabbitMQ node)', () => {
  let node: PrivateNode;
  let env: Environment | undefined;
  let app: App | undefined;

  before(async () => {
    // A 5 s consumer timeout checked every second: holding a delivery past it would close the channel.
    node = await startPrivateNode({ consumerTimeoutMs: 5000, channelTickMs: 1000 });
  });

  after(async () => {
    console.log(`\nbroker faults, by scenario and ledger:\n${accountingTable()}\n`);
    await node?.stop();
  });

  afterEach(async () => {
    await app?.stop();
    await env?.close();
    app = undefined;
    env = undefined;
  });

  async function environment(
    prefix: string,
    server: { delayMs?: number } = {},
    run: FaultRun = { mode: 'single', ledger: false },
  ): Promise<Environment> {
    const batch = run.mode === 'batch';
    env = await startEnvironment(prefix, {
      amqpUrl: node.url,
      node: node.nodeName,
      server,
      batch,
      ledger: run.ledger,
    });
    return env;
  }

  for (const run of FAULT_RUNS)
    it(`(c) all broker connections closed mid-stream, twice: reconnects, nothing lost (${runLabel(run)})`, async (t) => {
      const { mode, ledger } = run;
      // 20 ms per call keeps the stream going for several seconds, so both closes land mid-stream.
      const current = await environment('fault_c', { delayMs: 20 }, run);
      const started = Date.now();
      const messages = await publishScenario(current, COUNT, `c-${mode}`);
      ({ app } = await startApp(current.bridgeConfig()));
      const running = app;
      for (let close = 1; close <= 2; close++) {
        await waitForProgress(current, (COUNT * close) / 4);
        await node.closeAllConnections(`test: forced close ${close}`);
        await waitFor(
          async () =>
            (await metricValue(running, 'pgq_bridge_reconnects_total', { connection: 'consumer' })) >= close,
          { timeoutMs: 15_000, message: `reconnect ${close}` },
        );
      }
      const report = await finishAndAccount(current, messages, started);
      assertAccounted(t, `(c) close_all_connections x2, ${mode}`, report, ledger);
    });

  for (const run of FAULT_RUNS)
    it(`(d) RabbitMQ stopped and started (stop_app/start_app) mid-stream: reconnects, nothing lost (${runLabel(run)})`, async (t) => {
      const { mode, ledger } = run;
      const current = await environment('fault_d', { delayMs: 10 }, run);
      const started = Date.now();
      const messages = await publishScenario(current, COUNT, `d-${mode}`);
      ({ app } = await startApp(current.bridgeConfig()));
      await waitForProgress(current, COUNT / 3);
      await node.stopApp();
      const running = app;
      await waitFor(() => !running.ready, { message: 'not ready while the broker is down' });
      await new Promise((resolve) => setTimeout(resolve, 2000));
      await node.startApp();
      await waitFor(() => running.ready, { timeoutMs: 30_000, message: 'ready after the broker is back' });

      const report = await finishAndAccount(current, messages, started);
      assertAccounted(t, `(d) stop_app/start_app, ${mode}`, report, ledger);
    });

  it('a consumer cancelled by the broker (queue deleted) is reported, and consuming resumes on the re-declared queue', async () => {
    const current = await environment('cancel');
    ({ app } = await startApp(current.bridgeConfig()));
    const running = app;
    await waitFor(() => running.ready);
    const channel = await current.broker.channel();
    await channel.deleteQueue(current.queue);
    await waitFor(async () => (await metricValue(running, 'pgq_bridge_consumer_cancels_total')) === 1, {
      message: 'the cancel to be counted',
    });
    await waitFor(() => running.ready, { timeoutMs: 15_000, message: 'consuming again' });
    await current.broker.publish(current.queue, [{ body: '{"entrypoint":"after_cancel"}' }]);
    await waitFor(async () => {
      const { rows } = await current.db.pool.query(
        "SELECT 1 FROM pgqueuer WHERE entrypoint = 'after_cancel'",
      );
      return rows.length === 1;
    });
  });

  it('deliveries held while the endpoint is down longer than the consumer timeout are returned in time: the broker never closes the channel', async (t) => {
    const current = await environment('hold');
    let logs: LogSink;
    ({ app, logs } = await startApp(
      current.bridgeConfig({ retry: { maxHoldMs: 2000, initialDelayMs: 100, maxDelayMs: 500 } }),
    ));
    const running = app;
    await current.server.stop();
    await current.broker.publish(current.queue, [
      { body: '{"entrypoint":"held"}', options: { messageId: 'held-1' } },
    ]);
    await waitFor(async () => (await metricValue(running, 'pgq_bridge_requeued_total')) >= 1, {
      timeoutMs: 10_000,
      message: 'the held delivery to be returned',
    });
    // Longer than the broker's 5 s consumer timeout: a delivery held all along would have made
    // the broker close the channel by now.
    await new Promise((resolve) => setTimeout(resolve, 7000));
    assert.equal(
      logs.find((r) => r.msg === 'channel closed by the broker'),
      undefined,
      'no channel closed for a consumer timeout',
    );
    assert.equal(running.status().endpointFailing, true);
    await current.server.start();
    await waitFor(
      async () => {
        const { rows } = await current.db.pool.query("SELECT 1 FROM pgqueuer WHERE entrypoint = 'held'");
        return rows.length === 1;
      },
      { timeoutMs: 20_000, message: 'the returned message to become a job once the endpoint is back' },
    );
    await current.waitForQueueEmpty(10_000);
    t.diagnostic(
      `returned to the queue while the endpoint was down: ${await metricValue(running, 'pgq_bridge_requeued_total')} times`,
    );
  });
});
