import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { callBytes } from '../../src/pipeline/footprint.ts';
import type { RpcResult } from '../../src/postgrest/client.ts';
import { HeldCalls, harness, metricValue, settle, testConfig, until } from '../support/pipeline.ts';

/**
 * The pipeline's own bookkeeping, without RabbitMQ or HTTP: how many deliveries of a source are
 * worked on at once, in which order the rest start, what draining leaves, and what the metrics
 * say. The delivery rules are in decide.test.ts and delivery-paths.test.ts.
 */

const fast = testConfig({ retry: { initialDelayMs: 1, maxDelayMs: 5, maxHoldMs: 60_000 } });
const [sourceA, sourceB, sourceC] = fast.sources as [
  (typeof fast.sources)[number],
  (typeof fast.sources)[number],
  (typeof fast.sources)[number],
];
const job = (entrypoint: string) => ({ entrypoint });

describe('Pipeline lanes', () => {
  it('works on at most `parallelism` deliveries of a source at once, starting the rest in arrival order', async () => {
    const calls = new HeldCalls();
    const { pipeline, deliver } = harness({ config: fast, call: calls.call });
    const deliveries = Array.from({ length: 10 }, (_, i) => deliver(sourceA, job(`job.${i}`)));
    await settle();
    assert.deepEqual(calls.started, ['job.0', 'job.1', 'job.2']);
    assert.equal(pipeline.active, 10);
    for (let answered = 1; answered <= 10; answered++) {
      calls.answerOldest();
      await settle();
      assert.equal(calls.open.length, Math.min(3, 10 - answered));
    }
    assert.deepEqual(
      calls.started,
      Array.from({ length: 10 }, (_, i) => `job.${i}`),
    );
    assert.equal(calls.mostAtOnce, 3);
    assert.equal(pipeline.active, 0);
    assert.ok(deliveries.every((d) => d.settled === 'ack'));
  });

  it('gives each source its own lane: a busy source does not hold up another', async () => {
    const calls = new HeldCalls();
    const { deliver } = harness({ config: fast, call: calls.call });
    deliver(sourceB, job('b.0'));
    deliver(sourceB, job('b.1'));
    deliver(sourceA, job('a.0'));
    await settle();
    assert.deepEqual(calls.started, ['b.0', 'a.0']);
    calls.answerOldest();
    await settle();
    assert.deepEqual(calls.started, ['b.0', 'a.0', 'b.1']);
  });

  it('drain waits for deliveries in flight, acks them, and does not start the waiting ones', async () => {
    const calls = new HeldCalls();
    const { pipeline, deliver } = harness({ config: fast, call: calls.call });
    const first = deliver(sourceB, job('b.0'));
    const waiting = deliver(sourceB, job('b.1'));
    await settle();
    const drained = pipeline.drain(10_000);
    calls.answerOldest();
    assert.equal(await drained, 1, 'the waiting one is left to the broker');
    assert.equal(first.settled, 'ack', 'a job that exists is acked even while draining');
    assert.deepEqual(calls.started, ['b.0']);
    assert.equal(waiting.live, true, 'left unacked: the broker requeues it when the channel closes');
  });

  it('drain counts the deliveries still in flight when the grace ends', async () => {
    const calls = new HeldCalls();
    const { pipeline, deliver } = harness({ config: fast, call: calls.call });
    deliver(sourceA, job('a.0'));
    deliver(sourceA, job('a.1'));
    await settle();
    assert.equal(await pipeline.drain(20), 2);
  });

  it('drain ends its grace wait when the last delivery finishes, leaving no timer to hold the process', async () => {
    const timers = (): number => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
    const calls = new HeldCalls();
    const { pipeline, deliver } = harness({ config: fast, call: calls.call });
    deliver(sourceA, job('a.0'));
    await settle();
    const before = timers();
    const drained = pipeline.drain(60_000);
    assert.equal(timers(), before + 1, 'the grace timer runs while a delivery is in flight');
    calls.answerOldest();
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
      const { pipeline, deliver } = harness({ config: fast, call: async () => down });
      const held = Array.from({ length: 15 }, (_, i) => deliver(sourceC, job(`c.${i}`)));
      await new Promise((resolve) => setTimeout(resolve, 50));
      assert.equal(pipeline.active, 15, 'all held');
      assert.ok(
        held.every((d) => d.settled === undefined),
        'none settled',
      );
      assert.equal(await pipeline.drain(10_000), 15);
      await settle();
      assert.deepEqual(warnings, []);
    } finally {
      process.off('warning', onWarning);
    }
  });
});

describe('Pipeline metrics', () => {
  it('counts deliveries, in-flight, in-flight bytes and enqueued per queue, as read when scraped', async () => {
    const calls = new HeldCalls();
    const { metrics, deliver } = harness({ config: fast, call: calls.call });
    const a = { queue: 'a' };
    const b = { queue: 'b' };
    for (let i = 0; i < 5; i++) deliver(sourceA, job(`job.${i}`));
    deliver(sourceB, job('b.0'));
    await settle();
    assert.equal(await metricValue(metrics, 'pgq_bridge_deliveries_total', a), 5);
    assert.equal(await metricValue(metrics, 'pgq_bridge_in_flight', a), 5);
    assert.equal(await metricValue(metrics, 'pgq_bridge_in_flight', b), 1);
    // Each message's body, and for those being called what the call holds (here no payload:
    // the request's fields); those waiting for a turn hold only their body.
    const body = (entrypoint: string): number => Buffer.byteLength(JSON.stringify(job(entrypoint)));
    const calling = calls.open.reduce((sum, call) => sum + callBytes(Buffer.alloc(0), call.args), 0);
    assert.ok(calls.open.length < 6 && calling > 0);
    const bytes = 5 * body('job.0') + body('b.0') + calling;
    assert.equal(await metricValue(metrics, 'pgq_bridge_in_flight_bytes', {}), bytes);
    assert.equal(await metricValue(metrics, 'pgq_bridge_enqueued_total', a), undefined);

    calls.answerOldest();
    calls.answerOldest();
    await settle();
    assert.equal(await metricValue(metrics, 'pgq_bridge_in_flight', a), 3);
    assert.equal(await metricValue(metrics, 'pgq_bridge_enqueued_total', a), 2);
    // Reading again changes nothing: what was handed over is not counted twice.
    assert.equal(await metricValue(metrics, 'pgq_bridge_enqueued_total', a), 2);
    assert.equal(await metricValue(metrics, 'pgq_bridge_deliveries_total', a), 5);

    while (calls.open.length > 0) {
      calls.answerOldest();
      await settle();
    }
    await until(() => calls.started.length === 6 && calls.open.length === 0);
    assert.equal(await metricValue(metrics, 'pgq_bridge_in_flight', a), 0);
    assert.equal(await metricValue(metrics, 'pgq_bridge_in_flight', b), 0);
    assert.equal(await metricValue(metrics, 'pgq_bridge_in_flight_bytes', {}), 0);
    assert.equal(await metricValue(metrics, 'pgq_bridge_enqueued_total', a), 5);
    assert.equal(await metricValue(metrics, 'pgq_bridge_enqueued_total', b), 1);
  });
});
