import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { ConsumeMessage } from 'amqplib';
import type { App } from '../../src/app.ts';
import { startApp } from '../support/app.ts';
import { type Environment, startEnvironment } from '../support/environment.ts';
import { uniqueName, waitFor } from '../support/rabbit.ts';

/** A publisher that sets reply_to learns which job its message became, before the ack. */
describe('outcomes published to reply_to', () => {
  let env: Environment;
  let app: App;
  const replyQueue = uniqueName('pgqb-replies');

  before(async () => {
    env = await startEnvironment('reply');
    ({ app } = await startApp(env.bridgeConfig()));
    await (await env.broker.channel()).assertQueue(replyQueue, { durable: false });
  });

  after(async () => {
    await app?.stop();
    await env?.broker.deleteQueues(replyQueue);
    await env?.close();
  });

  it('answers enqueued (with the job id), duplicate and dead_lettered, each with its correlation id', async () => {
    const send = (body: string, correlationId: string) => ({
      body,
      options: { replyTo: replyQueue, correlationId },
    });
    await env.broker.publish(env.queue, [send('{"entrypoint":"reply","dedupe_key":"r-1"}', 'c-1')]);
    await waitFor(
      async () => (await env.db.pool.query("SELECT 1 FROM pgqueuer WHERE dedupe_key = 'r-1'")).rowCount === 1,
    );
    await env.broker.publish(env.queue, [
      send('{"entrypoint":"reply","dedupe_key":"r-1"}', 'c-2'),
      send('{"entrypoint":"reply","priority":"high"}', 'c-3'),
    ]);
    const replies = new Map<string, Record<string, unknown>>();
    await waitFor(async () => {
      for (const m of await env.broker.drainQueue(replyQueue)) {
        replies.set(
          String(m.properties.correlationId),
          JSON.parse(m.content.toString()) as Record<string, unknown>,
        );
      }
      return replies.size === 3;
    });
    const { rows } = await env.db.pool.query<{ id: string }>(
      "SELECT id::text FROM pgqueuer WHERE dedupe_key = 'r-1'",
    );
    assert.deepEqual(replies.get('c-1'), { status: 'enqueued', job_id: Number(rows[0]?.id) });
    assert.deepEqual(replies.get('c-2'), { status: 'duplicate', dedupe_key: 'r-1' });
    assert.deepEqual(replies.get('c-3'), {
      status: 'dead_lettered',
      kind: 'invalid_message',
      reason: 'invalid_priority',
      message: 'priority must be an integer from -2147483648 to 2147483647, got a string',
      dead_letter_queue: env.deadLetterQueue,
    });
  });

  it("works with RabbitMQ's direct reply-to", async () => {
    const channel = await env.broker.channel();
    const reply = new Promise<ConsumeMessage>((resolve) => {
      void channel.consume('amq.rabbitmq.reply-to', (m) => m && resolve(m), { noAck: true });
    });
    channel.publish('', env.queue, Buffer.from('{"entrypoint":"direct"}'), {
      replyTo: 'amq.rabbitmq.reply-to',
      correlationId: 'direct-1',
    });
    const message = await reply;
    assert.equal(message.properties.correlationId, 'direct-1');
    assert.equal((JSON.parse(message.content.toString()) as { status: string }).status, 'enqueued');
  });
});
