// The bridge with the idempotency ledger, single and batch mode, against the real broker and
// the RPC server: a message published again with the same message-id is acked as a replay
// (counted, no second job) and its reply_to gets the first job's id; a message without an id
// is dead-lettered as missing_message_id when the source demands one.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { App } from '../../src/app.ts';
import { metricValue, startApp } from '../support/app.ts';
import { type Environment, MODES, startEnvironment } from '../support/environment.ts';
import { runPsql } from '../support/pg.ts';
import { uniqueName, waitFor } from '../support/rabbit.ts';

const LEDGER_SQL = fileURLToPath(new URL('../../sql/install-ledger.sql', import.meta.url));

for (const mode of MODES) {
  describe(`the idempotency ledger through the bridge (${mode} mode)`, { timeout: 120_000 }, () => {
    let env: Environment;
    let app: App;
    const replyQueue = uniqueName('pgqb-ledger-replies');

    before(async () => {
      env = await startEnvironment(`ledger_${mode}`, { batch: mode === 'batch' });
      if (mode === 'single')
        await runPsql(env.db.name, fileURLToPath(new URL('../../sql/install-batch.sql', import.meta.url)));
      await runPsql(env.db.name, LEDGER_SQL);
      // A partition past the retention, for the bridge's maintenance to drop at start.
      await env.db.pool.query(
        `CREATE TABLE pgqueuer_ledger_20000101 PARTITION OF pgqueuer_ledger FOR VALUES FROM ('2000-01-01') TO ('2000-01-02')`,
      );
      await env.server.reloadSchemaCache();
      ({ app } = await startApp(
        env.bridgeConfig({
          source: { idempotency: { messageId: 'message-id', whenMissing: 'dead_letter' } },
          top: { ledger: { maintenanceIntervalMs: 3_600_000 } },
        }),
      ));
      await (await env.broker.channel()).assertQueue(replyQueue, { durable: false });
    });

    after(async () => {
      await app?.stop();
      await env?.broker.deleteQueues(replyQueue);
      await env?.close();
    });

    it('acks a repeated message-id as a replay with the first job id, and makes no second job', async () => {
      const message = (correlationId: string) => ({
        body: '{"entrypoint":"ledger"}',
        options: { messageId: 'order-1', replyTo: replyQueue, correlationId },
      });
      await env.broker.publish(env.queue, [message('c-1')]);
      await waitFor(
        async () =>
          (await env.db.pool.query(`SELECT 1 FROM pgqueuer WHERE entrypoint = 'ledger'`)).rowCount === 1,
      );
      // The first job finished and was deleted: the replay must still not make another.
      await env.db.pool.query(`DELETE FROM pgqueuer WHERE entrypoint = 'ledger'`);
      await env.broker.publish(env.queue, [message('c-2'), message('c-3')]);
      const replies = new Map<string, unknown>();
      await waitFor(async () => {
        for (const m of await env.broker.drainQueue(replyQueue)) {
          replies.set(String(m.properties.correlationId), JSON.parse(m.content.toString()));
        }
        return replies.size === 3;
      });
      await env.waitForQueueEmpty();
      const { rows } = await env.db.pool.query<{ job_id: string }>(
        `SELECT DISTINCT job_id::text FROM pgqueuer_ledger WHERE message_id = 'order-1'`,
      );
      assert.equal(rows.length, 1);
      const jobId = Number(rows[0]?.job_id);
      assert.deepEqual(Object.fromEntries(replies), {
        'c-1': { status: 'enqueued', job_id: jobId },
        'c-2': { status: 'enqueued', replayed: true, job_id: jobId },
        'c-3': { status: 'enqueued', replayed: true, job_id: jobId },
      });
      assert.equal(
        await env.db.pool.query(`SELECT 1 FROM pgqueuer WHERE entrypoint = 'ledger'`).then((r) => r.rowCount),
        0,
      );
      assert.equal(await metricValue(app, 'pgq_bridge_replayed_total', { queue: env.queue }), 2);
      assert.equal(await metricValue(app, 'pgq_bridge_enqueued_total', { queue: env.queue }), 1);
    });

    it('keeps the ledger through PostgREST when configured: old partitions dropped at start', async () => {
      await waitFor(
        async () =>
          (await env.db.pool.query(`SELECT to_regclass('pgqueuer_ledger_20000101') IS NULL AS gone`)).rows[0]
            ?.gone,
        { message: 'the bridge to prune the old partition' },
      );
    });

    it('dead-letters a message without a message-id as missing_message_id', async () => {
      await env.broker.publish(env.queue, [{ body: '{"entrypoint":"anonymous"}', options: {} }]);
      const dead = await waitFor(async () => {
        const messages = await env.broker.drainQueue(env.deadLetterQueue);
        return messages.length > 0 ? messages : undefined;
      });
      assert.equal(dead[0]?.properties.headers?.['x-pgq-bridge-error-reason'], 'missing_message_id');
      assert.equal(
        await env.db.pool
          .query(`SELECT 1 FROM pgqueuer WHERE entrypoint = 'anonymous'`)
          .then((r) => r.rowCount),
        0,
      );
    });
  });
}
