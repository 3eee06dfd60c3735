import assert from 'node:assert/strict';
import { setMaxListeners } from 'node:events';
import { describe, it } from 'node:test';
import type { ConsumeMessage } from 'amqplib';
import { pino } from 'pino';
import { ChannelAcks } from '../../src/amqp/acks.ts';
import { Delivery } from '../../src/amqp/consumer.ts';
import { parseConfig, type SourceConfig } from '../../src/config/config.ts';
import type { EnqueueArgs } from '../../src/message/decode.ts';
import { createPolicy } from '../../src/message/policy.ts';
import { Metrics } from '../../src/metrics.ts';
import { type Enqueuer, Pipeline } from '../../src/pipeline/pipeline.ts';
import type { RpcResult } from '../../src/postgrest/client.ts';
import { Circuit } from '../../src/resilience/circuit.ts';

/**
 * The pipeline's own bookkeeping, without RabbitMQ or HTTP: how many deliveries of a source are
 * worked on at once, in which order the rest start, and what the metrics say. The outcomes
 * themselves (acks, dead letters, retries) are proved against the real services in
 * test/integration.
 */

const config = parseConfig({
  amqp: { url: 'amqp://localhost' },
  postgrest: { url: 'http://localhost:3000' },
  sources: [
    { queue: 'a', concurrency: 3 },
    { queue: 'b', concurrency: 1 },
    { queue: 'c', concurrency: 20 },
  ],
});
const [sourceA, sourceB, sourceC] = config.sources as [SourceConfig, SourceConfig, SourceConfig];

/** An enqueuer whose calls stay open until the test answers them. */
class HeldCalls implements Enqueuer {
  readonly open: { readonly args: EnqueueArgs; readonly answer: (result: RpcResult) => void }[] = [];
  readonly started: string[] = [];
  mostAtOnce = 0;
  #nextId = 1;

  enqueue(args: EnqueueArgs): Promise<RpcResult> {
    this.started.push(args.entrypoint);
    return new Promise((resolve) => {
      this.open.push({ args, answer: resolve });
      this.mostAtOnce = Math.max(this.mostAtOnce, this.open.length);
    });
  }

  /** Answers the oldest open call with a job id. */
  succeedOldest(): void {
    const call = this.open.shift();
    assert.ok(call, 'no call is open');
    call.answer({ kind: 'enqueued', jobId: String(this.#nextId++) });
  }
}

function setup(enqueuer: Enqueuer): {
  pipeline: Pipeline;
  metrics: Metrics;
  deliver: (source: SourceConfig, entrypoint: string) => Delivery;
} {
  const metrics = new Metrics({ processMetrics: false });
  const pipeline = new Pipeline({
    rpc: () => enqueuer,
    parallelism: (source) => source.concurrency,
    publisher: { publish: async () => assert.fail('nothing is published in these tests') },
    circuit: new Circuit({
      failureThreshold: 5,
      backoff: config.retry,
      onIntake: () => {},
      onOpen: () => {},
      onClose: () => {},
    }),
    metrics,
    logger: pino({ level: 'silent' }),
    retry: config.retry,
    policy: createPolicy(config.policy),
  });
  const acks = new ChannelAcks<ConsumeMessage>({ ack: () => {}, requeue: () => {} });
  const lost = new AbortController();
  setMaxListeners(0, lost.signal); // as the consumer does for its channels
  const lease = { channel: {}, acks, open: true, lost };
  let tag = 0;
  const deliver = (source: SourceConfig, entrypoint: string): Delivery => {
    tag++;
    const message = {
      content: Buffer.from(JSON.stringify({ entrypoint })),
      fields: {
        deliveryTag: tag,
        redelivered: false,
        exchange: '',
        routingKey: source.queue,
        consumerTag: 'c',
      },
      properties: { contentType: 'application/json', headers: {} },
    } as unknown as ConsumeMessage;
    const delivery = new Delivery(source, message, lease as never, Date.now());
    pipeline.handle(delivery);
    return delivery;
  };
  return { pipeline, metrics, deliver };
}

/** Lets promise callbacks run until the pipeline has nothing more to do without an answer. */
async function settle(): Promise<void> {
  await new Promise((resolve) => setImmediate(resolve));
}

async function metricValue(metrics: Metrics, name: string, queue: string): Promise<number | undefined> {
  const metric = await metrics.registry.getSingleMetric(name)?.get();
  return metric?.values.find((v) => v.labels.queue === queue)?.value;
}

describe('Pipeline lanes', () => {
  it('works on at most `parallelism` deliveries of a source at once, starting the rest in arrival order', async () => {
    const calls = new HeldCalls();
    const { pipeline, deliver } = setup(calls);
    const deliveries = Array.from({ length: 10 }, (_, i) => deliver(sourceA, `job.${i}`));
    await settle();
    assert.deepEqual(calls.started, ['job.0', 'job.1', 'job.2']);
    assert.equal(pipeline.active, 10);

    for (let answered = 1; answered <= 10; answered++) {
      calls.succeedOldest();
      await settle();
      assert.equal(calls.open.length, Math.min(3, 10 - answered));
    }
    assert.deepEqual(
      calls.started,
      Array.from({ length: 10 }, (_, i) => `job.${i}`),
    );
    assert.equal(calls.mostAtOnce, 3);
    assert.equal(pipeline.active, 0);
    assert.ok(
      deliveries.every((d) => !d.live),
      'every delivery is settled (acked)',
    );
  });

  it('gives each source its own lane: a busy source does not hold up another', async () => {
    const calls = new HeldCalls();
    const { deliver } = setup(calls);
    deliver(sourceB, 'b.0');
    deliver(sourceB, 'b.1');
    deliver(sourceA, 'a.0');
    await settle();
    assert.deepEqual(calls.started, ['b.0', 'a.0']);
    calls.succeedOldest();
    await settle();
    assert.deepEqual(calls.started, ['b.0', 'a.0', 'b.1']);
  });

  it('moves on when working a delivery throws: the delivery stays unacked and the next one starts', async () => {
    let first = true;
    const calls = new HeldCalls();
    const { pipeline, deliver } = setup({
      enqueue(args) {
        if (first) {
          first = false;
          throw new Error('a bug');
        }
        return calls.enqueue(args);
      },
    });
    const broken = deliver(sourceB, 'b.0');
    deliver(sourceB, 'b.1');
    await settle();
    assert.equal(broken.live, true, 'left for the broker to redeliver');
    assert.deepEqual(calls.started, ['b.1']);
    calls.succeedOldest();
    await settle();
    assert.equal(pipeline.active, 0);
  });

  it('drain waits for deliveries in flight and does not start the waiting ones', async () => {
    const calls = new HeldCalls();
    const { pipeline, deliver } = setup(calls);
    deliver(sourceB, 'b.0');
    const waiting = deliver(sourceB, 'b.1');
    await settle();
    const drained = pipeline.drain(10_000);
    calls.succeedOldest();
    assert.equal(await drained, 0);
    assert.deepEqual(calls.started, ['b.0']);
    assert.equal(waiting.live, true, 'left unacked: the broker requeues it when the channel closes');
  });

  it('drain ends its grace wait when the last delivery finishes, leaving no timer to hold the process', async () => {
    const timers = (): number => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
    const calls = new HeldCalls();
    const { pipeline, deliver } = setup(calls);
    deliver(sourceA, 'a.0');
    await settle();
    const before = timers();
    const drained = pipeline.drain(60_000);
    assert.equal(timers(), before + 1, 'the grace timer runs while a delivery is in flight');
    calls.succeedOldest();
    assert.equal(await drained, 0);
    assert.equal(timers(), before);
  });
});

describe('Pipeline holds', () => {
  it('holds more than ten failing deliveries at once without a listener-leak warning', async () => {
    const warnings: string[] = [];
    const onWarning = (warning: Error): void => void warnings.push(warning.name);
    process.on('warning', onWarning);
    try {
      const down: RpcResult = {
        kind: 'network_error',
        errno: 'ECONNREFUSED',
        message: 'refused',
        requestSent: false,
      };
      const { pipeline, deliver } = setup({ enqueue: async () => down });
      for (let i = 0; i < 15; i++) deliver(sourceC, `c.${i}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
      assert.equal(pipeline.active, 15, 'all held, none settled');
      assert.equal(await pipeline.drain(10_000), 0);
      await settle();
      assert.deepEqual(warnings, []);
    } finally {
      process.off('warning', onWarning);
    }
  });
});

describe('Pipeline metrics', () => {
  it('counts deliveries, in-flight and enqueued per queue, as read when scraped', async () => {
    const calls = new HeldCalls();
    const { metrics, deliver } = setup(calls);
    for (let i = 0; i < 5; i++) deliver(sourceA, `job.${i}`);
    deliver(sourceB, 'b.0');
    await settle();
    assert.equal(await metricValue(metrics, 'pgq_bridge_deliveries_total', 'a'), 5);
    assert.equal(await metricValue(metrics, 'pgq_bridge_in_flight', 'a'), 5);
    assert.equal(await metricValue(metrics, 'pgq_bridge_in_flight', 'b'), 1);
    assert.equal(await metricValue(metrics, 'pgq_bridge_enqueued_total', 'a'), undefined);

    calls.succeedOldest();
    calls.succeedOldest();
    await settle();
    assert.equal(await metricValue(metrics, 'pgq_bridge_in_flight', 'a'), 3);
    assert.equal(await metricValue(metrics, 'pgq_bridge_enqueued_total', 'a'), 2);
    // Reading again changes nothing: what was handed over is not counted twice.
    assert.equal(await metricValue(metrics, 'pgq_bridge_enqueued_total', 'a'), 2);
    assert.equal(await metricValue(metrics, 'pgq_bridge_deliveries_total', 'a'), 5);

    while (calls.open.length > 0) {
      calls.succeedOldest();
      await settle();
    }
    assert.equal(await metricValue(metrics, 'pgq_bridge_in_flight', 'a'), 0);
    assert.equal(await metricValue(metrics, 'pgq_bridge_in_flight', 'b'), 0);
    assert.equal(await metricValue(metrics, 'pgq_bridge_enqueued_total', 'a'), 5);
    assert.equal(await metricValue(metrics, 'pgq_bridge_enqueued_total', 'b'), 1);
  });
});
