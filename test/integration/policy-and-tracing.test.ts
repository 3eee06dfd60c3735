import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { App } from '../../src/app.ts';
import { startApp } from '../support/app.ts';
import { type Environment, startEnvironment } from '../support/environment.ts';
import { waitFor } from '../support/rabbit.ts';

/** Operator limits and trace propagation, end to end through the bridge into PostgreSQL. */
describe('policy limits and trace propagation', () => {
  let env: Environment;
  let app: App;

  before(async () => {
    env = await startEnvironment('policy');
    ({ app } = await startApp(
      env.bridgeConfig({
        top: {
          policy: { entrypoints: ['send_email', 'report_*'], maxPayloadBytes: 1024, maxHeadersBytes: 256 },
        },
      }),
    ));
  });

  after(async () => {
    await app?.stop();
    await env?.close();
  });

  it('dead-letters each policy violation with its own reason and enqueues what is allowed', async () => {
    const big = Buffer.alloc(1025, 1).toString('base64');
    await env.broker.publish(env.queue, [
      { body: '{"entrypoint":"drop_tables"}', options: { messageId: 'not-allowed' } },
      { body: `{"entrypoint":"send_email","payload":"${big}"}`, options: { messageId: 'too-big' } },
      {
        body: `{"entrypoint":"send_email","headers":{"x":"${'y'.repeat(300)}"}}`,
        options: { messageId: 'headers' },
      },
      { body: '{"entrypoint":"report_daily"}', options: { messageId: 'allowed' } },
    ]);
    const reasons = new Map<string, unknown>();
    await waitFor(async () => {
      for (const m of await env.broker.drainQueue(env.deadLetterQueue)) {
        reasons.set(String(m.properties.messageId), m.properties.headers?.['x-pgq-bridge-error-reason']);
      }
      return reasons.size === 3;
    });
    assert.deepEqual(Object.fromEntries(reasons), {
      'not-allowed': 'entrypoint_not_allowed',
      'too-big': 'payload_too_large',
      headers: 'headers_too_large',
    });
    await waitFor(
      async () =>
        (await env.db.pool.query("SELECT 1 FROM pgqueuer WHERE entrypoint = 'report_daily'")).rowCount === 1,
    );
    await env.waitForQueueEmpty(10_000);
  });

  it("carries the message's traceparent, tracestate and baggage into the job's headers.otel", async () => {
    const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
    await env.broker.publish(env.queue, [
      {
        body: '{"entrypoint":"send_email","headers":{"source":"api"}}',
        options: { headers: { traceparent, tracestate: 'vendor=x', baggage: 'tenant=7' } },
      },
    ]);
    const row = await waitFor(async () => {
      const { rows } = await env.db.pool.query<{ headers: Record<string, unknown> }>(
        "SELECT headers FROM pgqueuer WHERE entrypoint = 'send_email'",
      );
      return rows[0];
    });
    assert.deepEqual(row.headers, {
      source: 'api',
      otel: { traceparent, tracestate: 'vendor=x', baggage: 'tenant=7' },
    });
  });
});
