import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { App } from '../../src/app.ts';
import { type LogSink, metricValue, startApp } from '../support/app.ts';
import { type Environment, MODES, startEnvironment } from '../support/environment.ts';
import { queueCounts, uniqueName, waitFor } from '../support/rabbit.ts';

/**
 * The foundation, end to end on the real services: RabbitMQ → bridge → PostgREST-compatible
 * server → PostgreSQL. Each test publishes, waits for the observable result (rows, dead letters,
 * queue counts) and checks it exactly.
 */

interface JobRow {
  id: string;
  entrypoint: string;
  priority: number;
  payload: Buffer | null;
  dedupe_key: string | null;
  headers: Record<string, unknown> | null;
  delay_seconds: string;
  status: string;
  big: string | null;
}

for (const mode of MODES)
  describe(`bridge on real RabbitMQ and PostgreSQL (${mode} mode)`, () => {
    let env: Environment;
    let app: App;
    let logs: LogSink;
    const rawQueue = uniqueName('pgqb-raw');

    before(async () => {
      env = await startEnvironment('bridge', { batch: mode === 'batch' });
      const config = env.bridgeConfig();
      const sources = config.sources as Array<Record<string, unknown>>;
      sources.push({
        queue: rawQueue,
        mode: 'raw',
        entrypoint: 'raw_default',
        entrypointHeader: 'x-entrypoint',
        dedupeKeyFromMessageId: true,
      });
      ({ app, logs } = await startApp(config));
    });

    after(async () => {
      await app?.stop();
      await env?.broker.deleteQueues(rawQueue, `${rawQueue}.dead`);
      await env?.close();
    });

    async function jobsWhere(condition: string, params: unknown[]): Promise<JobRow[]> {
      const { rows } = await env.db.pool.query<JobRow>(
        `SELECT id::text, entrypoint, priority, payload, dedupe_key, headers, status::text,
              extract(epoch FROM execute_after - created)::text AS delay_seconds,
              headers->>'big' AS big
         FROM pgqueuer WHERE ${condition} ORDER BY id`,
        params,
      );
      return rows;
    }

    async function waitForJobs(condition: string, params: unknown[], count: number): Promise<JobRow[]> {
      return waitFor(
        async () => {
          const rows = await jobsWhere(condition, params);
          return rows.length >= count ? rows : undefined;
        },
        { timeoutMs: 20_000, message: `${count} job(s) where ${condition}` },
      );
    }

    it('turns an envelope into one job with exact bytes, priority, delay, dedupe key and headers, then acks it', async () => {
      const bytes = Buffer.from([0x00, 0xff, 0x00, 0x80, 0x7f, 0xfe, 0x0a, 0x68, 0x69, 0x00]);
      const headersText = '{"trace": "t-1", "big": 12345678901234567890, "nested": {"a": [1, null]}}';
      const body =
        `{"entrypoint":"exact","payload":"${bytes.toString('base64')}","priority":7,` +
        `"execute_after":"10 seconds","dedupe_key":"exact-1","headers":${headersText}}`;
      await env.broker.publish(env.queue, [{ body, options: { messageId: 'm-exact', persistent: true } }]);

      const [job] = await waitForJobs('entrypoint = $1', ['exact'], 1);
      assert.ok(job);
      assert.deepEqual(job.payload, bytes);
      assert.equal(job.priority, 7);
      assert.equal(Number(job.delay_seconds), 10);
      assert.equal(job.dedupe_key, 'exact-1');
      assert.equal(job.status, 'queued');
      // jsonb keeps numeric precision: the publisher's integer arrives exactly.
      assert.equal(job.big, '12345678901234567890');
      assert.deepEqual(job.headers?.nested, { a: [1, null] });
      const log = await env.db.pool.query(
        'SELECT status::text, entrypoint, priority FROM pgqueuer_log WHERE job_id = $1',
        [job.id],
      );
      assert.deepEqual(log.rows, [{ status: 'queued', entrypoint: 'exact', priority: 7 }]);

      await env.waitForQueueEmpty(10_000);
      assert.deepEqual(await queueCounts(env.queue), { ready: 0, unacked: 0, consumers: 1 });
      const enqueuedLog = logs.find((r) => r.msg === 'enqueued' && r.messageId === 'm-exact');
      assert.equal(enqueuedLog?.jobId, job.id);
      assert.equal(enqueuedLog?.queue, env.queue);
    });

    it('stores a JSON object payload as the exact text the publisher wrote', async () => {
      const payloadText = '{ "id": 9007199254740993, "items": [1,  2], "text": "caf\\u00e9" }';
      await env.broker.publish(env.queue, [
        { body: `{"entrypoint":"json_payload","payload":${payloadText}}` },
      ]);
      const [job] = await waitForJobs('entrypoint = $1', ['json_payload'], 1);
      assert.equal(job?.payload?.toString('utf8'), payloadText);
      assert.equal(job?.priority, 0);
      assert.equal(Number(job?.delay_seconds), 0);
      assert.equal(job?.dedupe_key, null);
      assert.equal(job?.headers, null);
    });

    it('takes a raw message body as the payload, the entrypoint from a header, the priority and dedupe key from AMQP properties', async () => {
      const body = Buffer.from([0xff, 0x00, 0xd8, 0x00, 0xdc, 0xff]);
      await env.broker.publish(rawQueue, [
        { body, options: { headers: { 'x-entrypoint': 'thumbnail' }, priority: 9, messageId: 'raw-1' } },
        { body: Buffer.alloc(0), options: { messageId: 'raw-2' } },
      ]);
      const [withHeader] = await waitForJobs('dedupe_key = $1', ['raw-1'], 1);
      assert.equal(withHeader?.entrypoint, 'thumbnail');
      assert.deepEqual(withHeader?.payload, body);
      assert.equal(withHeader?.priority, 9);
      const [fallback] = await waitForJobs('dedupe_key = $1', ['raw-2'], 1);
      assert.equal(fallback?.entrypoint, 'raw_default');
      assert.deepEqual(fallback?.payload, Buffer.alloc(0));
    });

    it('dead-letters an invalid message with its reason, then acks it', async () => {
      const body = '{"entrypoint":"bad","priority":"high"}';
      await env.broker.publish(env.queue, [
        { body, options: { messageId: 'm-invalid', contentType: 'application/json' } },
      ]);
      const [dead] = await waitFor(async () => {
        const messages = await env.broker.drainQueue(env.deadLetterQueue);
        return messages.length > 0 ? messages : undefined;
      });
      assert.ok(dead);
      assert.equal(dead.content.toString(), body);
      assert.equal(dead.properties.messageId, 'm-invalid');
      assert.equal(dead.properties.contentType, 'application/json');
      const headers = dead.properties.headers ?? {};
      assert.equal(headers['x-pgq-bridge-error-kind'], 'invalid_message');
      assert.equal(headers['x-pgq-bridge-error-reason'], 'invalid_priority');
      assert.match(String(headers['x-pgq-bridge-error-message']), /priority must be an integer/);
      assert.equal(headers['x-pgq-bridge-source-queue'], env.queue);
      await env.waitForQueueEmpty(10_000);
      assert.equal((await jobsWhere('entrypoint = $1', ['bad'])).length, 0);
    });

    it('dead-letters a message PostgREST rejects, with the HTTP status and SQLSTATE', async () => {
      const body = '{"entrypoint":"late","execute_after":"ten seconds"}';
      await env.broker.publish(env.queue, [{ body, options: { messageId: 'm-rejected' } }]);
      const [dead] = await waitFor(async () => {
        const messages = await env.broker.drainQueue(env.deadLetterQueue);
        return messages.length > 0 ? messages : undefined;
      });
      const headers = dead?.properties.headers ?? {};
      assert.equal(headers['x-pgq-bridge-error-kind'], 'rejected_by_rpc');
      assert.equal(headers['x-pgq-bridge-http-status'], 400);
      assert.equal(headers['x-pgq-bridge-postgrest-code'], '22007');
      // The bulk function names the element and field; split down to this one job, it is element 0.
      const prefix = mode === 'batch' ? 'jobs[0].execute_after: ' : '';
      assert.equal(
        headers['x-pgq-bridge-error-message'],
        `${prefix}invalid input syntax for type interval: "ten seconds"`,
      );
      assert.equal(dead?.content.toString(), body);
      await env.waitForQueueEmpty(10_000);
    });

    it('acks a message whose dedupe key is already queued as a duplicate, leaving one job', async () => {
      const before = await metricValue(app, 'pgq_bridge_duplicates_total');
      const body = '{"entrypoint":"dedupe","dedupe_key":"same-key"}';
      await env.broker.publish(env.queue, [{ body }]);
      await waitForJobs('dedupe_key = $1', ['same-key'], 1);
      await env.broker.publish(env.queue, [{ body, options: { messageId: 'm-dup' } }]);
      await waitFor(async () => (await metricValue(app, 'pgq_bridge_duplicates_total')) === before + 1);
      await env.waitForQueueEmpty(10_000);
      assert.equal((await jobsWhere('dedupe_key = $1', ['same-key'])).length, 1);
      assert.equal(logs.find((r) => r.messageId === 'm-dup')?.outcome, 'duplicate');
    });

    it('turns 1,000 messages into 1,000 jobs', async () => {
      const messages = Array.from({ length: 1000 }, (_, i) => ({
        body: JSON.stringify({ entrypoint: 'bulk', payload: { i }, headers: { mid: `bulk-${i}` } }),
      }));
      await env.broker.publish(env.queue, messages);
      await waitFor(
        async () =>
          (await env.db.pool.query("SELECT count(*)::int AS n FROM pgqueuer WHERE entrypoint = 'bulk'"))
            .rows[0]?.n === 1000,
        { timeoutMs: 60_000, intervalMs: 200, message: '1,000 bulk jobs' },
      );
      await env.waitForQueueEmpty(10_000);
      const { rows } = await env.db.pool.query(
        "SELECT count(DISTINCT headers->>'mid')::int AS distinct_mids FROM pgqueuer WHERE entrypoint = 'bulk'",
      );
      assert.equal(rows[0]?.distinct_mids, 1000);
    });

    it('serves health, readiness and metrics', async () => {
      const base = `http://127.0.0.1:${app.httpPort}`;
      assert.equal((await fetch(`${base}/healthz`)).status, 200);
      const ready = await fetch(`${base}/readyz`);
      assert.equal(ready.status, 200);
      assert.equal(((await ready.json()) as { ready: boolean }).ready, true);
      const metrics = await (await fetch(`${base}/metrics`)).text();
      assert.match(metrics, new RegExp(`pgq_bridge_enqueued_total\\{queue="${env.queue}"\\} \\d+`));
    });
  });
