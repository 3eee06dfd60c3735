import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { DROPPED_HEADERS, HEADER_PREFIX } from '../../src/amqp/dead-letter.ts';
import { ConfirmPublisher } from '../../src/amqp/publisher.ts';
import { AmqpSettlePort } from '../../src/amqp/settle-port.ts';
import { Metrics } from '../../src/metrics.ts';
import { harness, metricValue, TestDelivery, testConfig, until } from '../support/pipeline.ts';
import { amqpUrl, TestBroker, uniqueName } from '../support/rabbit.ts';

/**
 * Dead letters against the real broker: one whose queue an operator deleted comes back as a
 * return (not a confirm), the queue is declared again and the message is acked only once its
 * dead letter is routed; one whose headers fill the frame table still gets dead-lettered.
 */

const logger = pino({ level: 'silent' });
let broker: TestBroker;
let publisher: ConfirmPublisher;
const queues: string[] = [];

function sourceWithUndeclaredDeadLetterQueue() {
  const queue = uniqueName('dl-routing');
  const config = testConfig({
    amqp: { url: amqpUrl() },
    sources: [{ queue, concurrency: 2 }],
    retry: { initialDelayMs: 5, maxDelayMs: 20, maxHoldMs: 10_000 },
  });
  const source = config.sources[0] as (typeof config.sources)[number];
  queues.push(source.deadLetterQueue);
  return { config, source };
}

before(async () => {
  broker = await TestBroker.connect();
  publisher = new ConfirmPublisher(
    {
      urls: [amqpUrl()],
      startAt: 0,
      connectTimeoutMs: 5_000,
      heartbeatSeconds: 10,
      connectionName: 'dead-letter-routing-test',
      reconnectInitialDelayMs: 50,
      reconnectMaxDelayMs: 500,
      confirmTimeoutMs: 5_000,
    },
    logger,
  );
  publisher.start();
  await until(() => publisher.ready, 10_000);
});

after(async () => {
  await broker.deleteQueues(...queues);
  await broker.close();
  await publisher.close();
});

describe('Dead letters on the real broker', () => {
  it('a dead letter to a deleted queue is returned, not confirmed', async () => {
    const { source } = sourceWithUndeclaredDeadLetterQueue();
    const result = await publisher.publish(source.deadLetterQueue, Buffer.from('x'), {});
    assert.equal(!result.ok && result.kind, 'returned');
  });

  it('declares the dead-letter queue again and acks the message only once its dead letter is routed', async () => {
    const { config, source } = sourceWithUndeclaredDeadLetterQueue();
    const metrics = new Metrics({ processMetrics: false });
    const port = new AmqpSettlePort(publisher, metrics, logger);
    const { pipeline } = harness({ config, deps: { settle: port, metrics } });
    const delivery = new TestDelivery(source, Buffer.from('{not json'), 1, {
      attributes: { messageId: 'm-1' },
    });
    pipeline.handle(delivery);
    await until(() => delivery.settled !== undefined, 10_000);
    assert.equal(delivery.settled, 'ack');
    assert.equal(await metricValue(metrics, 'pgq_bridge_publish_failures_total', { kind: 'returned' }), 1);
    const letters = await broker.drainQueue(source.deadLetterQueue);
    assert.equal(letters.length, 1, 'exactly one dead letter, in the queue declared again');
    assert.equal(letters[0]?.properties.messageId, 'm-1');
    assert.equal(letters[0]?.properties.headers?.[`${HEADER_PREFIX}error-kind`], 'invalid_message');
  });

  it('dead-letters a message whose own headers nearly fill the frame table, saying what was dropped', async () => {
    const { config, source } = sourceWithUndeclaredDeadLetterQueue();
    const metrics = new Metrics({ processMetrics: false });
    const port = new AmqpSettlePort(publisher, metrics, logger);
    const { pipeline } = harness({ config, deps: { settle: port, metrics } });
    // About 63 KiB of headers: under the broker's limit alone, over it with the bridge's reasons.
    const headers = { 'x-trace': 't'.repeat(40_000), 'x-big': 'b'.repeat(23_000), 'x-small': 's' };
    const delivery = new TestDelivery(source, Buffer.from('{not json'), 1, { attributes: { headers } });
    pipeline.handle(delivery);
    await until(() => delivery.settled !== undefined, 10_000);
    assert.equal(delivery.settled, 'ack');
    const letters = await broker.drainQueue(source.deadLetterQueue);
    const letter = letters.find((l) => l.content.toString() === '{not json');
    assert.ok(letter, 'the dead letter keeps the body');
    const got = letter.properties.headers ?? {};
    assert.equal(got[`${HEADER_PREFIX}error-kind`], 'invalid_message');
    assert.equal(got['x-small'], 's', 'small headers are kept');
    assert.ok(String(got[DROPPED_HEADERS]).includes('x-trace'), 'the largest is dropped and named');
    assert.equal(
      await metricValue(metrics, 'pgq_bridge_dead_letter_dropped_headers_total', { queue: source.queue }),
      1,
    );
  });
});
