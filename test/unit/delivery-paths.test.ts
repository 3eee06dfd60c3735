import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { EnqueueArgs } from '../../src/message/args.ts';
import type { RpcResult } from '../../src/postgrest/client.ts';
import { type Attempt, type Enqueuer, NOT_SENT } from '../../src/postgrest/enqueuer.ts';
import { RateLimiter } from '../../src/resilience/rate-limit.ts';
import { HeldCalls, harness, metricValue, settle, testConfig, until } from '../support/pipeline.ts';

/**
 * Paths that once broke the delivery promise (acked without a job, stuck unacked, sent again),
 * each driven through the real pipeline, settler and circuit with a scripted endpoint and broker.
 */

const config = testConfig({
  retry: { initialDelayMs: 1, maxDelayMs: 5, maxHoldMs: 1000, poisonAttempts: 2, maxDeliveries: 2 },
});
const source = config.sources[2] as (typeof config.sources)[number]; // concurrency 20
const serial = config.sources[1] as (typeof config.sources)[number]; // concurrency 1

const jobId = (id: number): RpcResult => ({ kind: 'enqueued', jobId: String(id) });
const pgError = (status: number, code: string, message: string): RpcResult => ({
  kind: 'http_error',
  status,
  code,
  message,
  details: null,
  hint: null,
  retryAfterMs: 0,
});

/** Answers by entrypoint: `answers[entrypoint]` in turn (the last one repeats), else a new job id. */
function scripted(answers: Record<string, RpcResult[]>): {
  call: (args: EnqueueArgs) => Promise<RpcResult>;
  sent: string[];
} {
  let next = 1;
  const sent: string[] = [];
  const call = async (args: EnqueueArgs): Promise<RpcResult> => {
    sent.push(args.entrypoint);
    const script = answers[args.entrypoint];
    if (script === undefined || script.length === 0) return jobId(next++);
    return (script.length > 1 ? script.shift() : script[0]) as RpcResult;
  };
  return { call, sent };
}

describe('A unique violation is a duplicate only on the dedupe index', () => {
  it('retries a conflict on another constraint instead of acking it, then acks the job', async () => {
    const { call, sent } = scripted({
      'other.pk': [
        pgError(409, '23505', 'duplicate key value violates unique constraint "pgqueuer_pkey"'),
        jobId(7),
      ],
    });
    const { deliver, metrics } = harness({ config, call });
    const delivery = deliver(source, { entrypoint: 'other.pk', dedupe_key: 'k1' });
    await until(() => delivery.settled !== undefined);
    assert.deepEqual(sent, ['other.pk', 'other.pk'], 'sent again: the first call wrote no job');
    assert.equal(delivery.settled, 'ack');
    assert.equal(await metricValue(metrics, 'pgq_bridge_duplicates_total', { queue: 'c' }), undefined);
    assert.equal(await metricValue(metrics, 'pgq_bridge_enqueued_total', { queue: 'c' }), 1);
  });

  it('acks a conflict on the dedupe index as a duplicate', async () => {
    const { call } = scripted({
      dup: [
        pgError(409, '23505', 'duplicate key value violates unique constraint "pgqueuer_unique_dedupe_key"'),
      ],
    });
    const { deliver, metrics } = harness({ config, call });
    const delivery = deliver(source, { entrypoint: 'dup', dedupe_key: 'k1' });
    await until(() => delivery.settled !== undefined);
    assert.equal(delivery.settled, 'ack');
    assert.equal(await metricValue(metrics, 'pgq_bridge_duplicates_total', { queue: 'c' }), 1);
  });
});

describe('Dead letters are acked only once routed and confirmed', () => {
  it('publishes a returned or unconfirmed dead letter again and acks after the broker routed it', async () => {
    const { deliver, port } = harness({ config });
    port.deadLetterAnswers = [
      { ok: false, kind: 'returned', message: 'NO_ROUTE' },
      { ok: false, kind: 'timeout', message: 'no confirm' },
    ];
    const delivery = deliver(source, Buffer.from('{not json'));
    await until(() => delivery.settled !== undefined);
    assert.equal(port.deadLetters.length, 3);
    assert.equal(delivery.settled, 'ack');
    assert.deepEqual(delivery.calls, ['ack']);
  });

  it('hands the message back when its dead letter never gets routed within the hold', async () => {
    const { deliver, port, metrics } = harness({ config });
    port.deadLetterAnswers = Array.from({ length: 10_000 }, () => ({
      ok: false as const,
      kind: 'returned' as const,
      message: 'NO_ROUTE',
    }));
    const delivery = deliver(source, Buffer.from('{not json'));
    await until(() => delivery.settled !== undefined, 5_000);
    assert.equal(delivery.settled, 'requeue');
    assert.equal(
      await metricValue(metrics, 'pgq_bridge_requeued_total', { queue: 'c', why: 'held_too_long' }),
      1,
    );
  });

  it('never dead-letters a delivery whose channel is gone (the broker redelivers it)', async () => {
    const calls = new HeldCalls();
    const { deliver, port } = harness({ config, call: calls.call });
    const delivery = deliver(source, { entrypoint: 'refused' });
    await settle();
    delivery.lose();
    calls.answerOldest(pgError(400, '22P02', 'invalid input syntax'));
    await settle();
    await settle();
    assert.equal(port.deadLetters.length, 0);
    assert.deepEqual(delivery.calls, []);
  });

  it('stops publishing a failing dead letter once the channel is gone', async () => {
    const { deliver, port } = harness({ config });
    port.deadLetterAnswers = Array.from({ length: 10_000 }, () => ({
      ok: false as const,
      kind: 'unavailable' as const,
      message: 'publisher down',
    }));
    const delivery = deliver(source, Buffer.from('{not json'));
    await until(() => port.deadLetters.length >= 2);
    delivery.lose();
    const published = port.deadLetters.length;
    await new Promise((resolve) => setTimeout(resolve, 30));
    assert.ok(port.deadLetters.length <= published + 1, 'at most the attempt already under way');
    assert.deepEqual(delivery.calls, []);
  });
});

describe('No delivery is left without an owner', () => {
  it('hands back after a backoff when the request path throws, counts it, and is faulty until a success', async () => {
    let broken = true;
    const enqueuer: Enqueuer = {
      enqueue(args) {
        // Not async: a synchronous throw, as an invalid header value makes in http.request().
        if (broken)
          throw new TypeError(`Invalid character in header content ["Authorization"] (${args.entrypoint})`);
        return Promise.resolve({
          outcome: { kind: 'enqueued', jobId: '1' },
          result: jobId(1),
        } satisfies Attempt);
      },
    };
    const { deliver, pipeline, metrics, health } = harness({ config, enqueuer });
    const first = deliver(source, { entrypoint: 'a' });
    await until(() => first.settled !== undefined);
    assert.equal(first.settled, 'requeue');
    assert.equal(pipeline.faulty, true);
    assert.equal(health.changes, 1);
    assert.equal(await metricValue(metrics, 'pgq_bridge_internal_errors_total', { queue: 'c' }), 1);
    assert.equal(
      await metricValue(metrics, 'pgq_bridge_requeued_total', { queue: 'c', why: 'internal_error' }),
      1,
    );
    broken = false;
    const second = deliver(source, { entrypoint: 'a' });
    await until(() => second.settled !== undefined);
    assert.equal(second.settled, 'ack');
    assert.equal(pipeline.faulty, false, 'a success clears it');
    assert.equal(health.changes, 2);
  });

  it('hands back when the endpoint call rejects instead of answering', async () => {
    const { deliver } = harness({
      config,
      call: async () => {
        throw new Error('unexpected');
      },
    });
    const delivery = deliver(source, { entrypoint: 'a' });
    await until(() => delivery.settled !== undefined);
    assert.equal(delivery.settled, 'requeue');
  });
});

describe('A job that exists is acked once, whatever happens to its reply', () => {
  it('acks once and counts the failure when the reply cannot be delivered', async () => {
    const { call, sent } = scripted({});
    const { deliver, port, metrics } = harness({ config, call });
    port.replyAnswers = [{ ok: false, kind: 'returned', message: 'NO_ROUTE' }];
    const delivery = deliver(source, { entrypoint: 'a' }, { attributes: { replyTo: 'replies' } });
    await until(() => delivery.settled !== undefined);
    assert.equal(delivery.settled, 'ack');
    assert.deepEqual(sent, ['a'], 'never sent round again');
    assert.equal(port.replies.length, 1);
    assert.equal(
      await metricValue(metrics, 'pgq_bridge_reply_failures_total', { queue: 'c', kind: 'returned' }),
      1,
    );
  });
});

describe('Endpoint faults are never dead-lettered', () => {
  it('holds a message the endpoint cannot route while others succeed, then hands it back', async () => {
    const { call } = scripted({
      stale: [
        pgError(404, 'PGRST202', 'Could not find the function public.fn_pgqueuer_enqueue(headers, ...)'),
      ],
    });
    const { deliver, port } = harness({ config, call });
    const stale = deliver(source, { entrypoint: 'stale' });
    const others = Array.from({ length: 20 }, (_, i) => deliver(source, { entrypoint: `ok.${i}` }));
    await until(() => stale.settled !== undefined && others.every((d) => d.settled !== undefined), 5_000);
    assert.ok(others.every((d) => d.settled === 'ack'));
    assert.equal(stale.settled, 'requeue');
    assert.equal(port.deadLetters.length, 0);
  });
});

describe('A message that keeps failing while others succeed', () => {
  const huge = pgError(500, '57014', 'canceling statement due to statement timeout');

  it('is handed back while it has deliveries left (a transient error may pass)', async () => {
    const { call } = scripted({ huge: [huge] });
    const { deliver, port, metrics } = harness({ config, call });
    const stuck = deliver(serial, { entrypoint: 'huge' }, { attributes: { messageId: 'm1' } });
    deliver(source, { entrypoint: 'ok' });
    await until(() => stuck.settled !== undefined, 5_000);
    assert.equal(stuck.settled, 'requeue');
    assert.equal(port.deadLetters.length, 0);
    assert.equal(
      await metricValue(metrics, 'pgq_bridge_requeued_total', { queue: 'b', why: 'repeated_failure' }),
      1,
    );
  });

  it('is dead-lettered as repeated_failure once maxDeliveries is reached (x-delivery-count)', async () => {
    const { call } = scripted({ huge: [huge] });
    const { deliver, port } = harness({ config, call });
    const stuck = deliver(serial, { entrypoint: 'huge' }, { priorDeliveries: 1 });
    deliver(source, { entrypoint: 'ok' });
    await until(() => stuck.settled !== undefined, 5_000);
    assert.equal(stuck.settled, 'ack');
    assert.equal(port.deadLetters[0]?.reason.kind, 'repeated_failure');
  });

  it('is counted by message id on a queue that only says "redelivered"', async () => {
    const { call } = scripted({ huge: [huge] });
    const { deliver, port } = harness({ config, call });
    const first = deliver(serial, { entrypoint: 'huge' }, { attributes: { messageId: 'm1' } });
    deliver(source, { entrypoint: 'ok' });
    await until(() => first.settled !== undefined, 5_000);
    assert.equal(first.settled, 'requeue');
    const again = deliver(
      serial,
      { entrypoint: 'huge' },
      { attributes: { messageId: 'm1' }, redelivered: true },
    );
    deliver(source, { entrypoint: 'ok.2' });
    await until(() => again.settled !== undefined, 5_000);
    assert.equal(again.settled, 'ack');
    assert.equal(port.deadLetters.length, 1);
    assert.equal(port.deadLetters[0]?.reason.kind, 'repeated_failure');
  });
});

describe('Nothing is sent for a delivery that is gone', () => {
  it('does not send a delivery lost while it waited for the rate limiter', async () => {
    const { call, sent } = scripted({});
    const { deliver } = harness({ config, call, deps: { rateLimiter: new RateLimiter(1) } });
    // One second's burst lets the first two go at once; the third waits for its slot.
    const sentAtOnce = [deliver(source, { entrypoint: 'first' }), deliver(source, { entrypoint: 'second' })];
    const third = deliver(source, { entrypoint: 'third' });
    await until(() => sentAtOnce.every((d) => d.settled !== undefined));
    await settle();
    third.lose();
    await new Promise((resolve) => setTimeout(resolve, 1_100));
    assert.deepEqual(sent, ['first', 'second']);
    assert.deepEqual(third.calls, []);
  });

  it('does not send a delivery whose turn came after the drain began', async () => {
    const { call, sent } = scripted({});
    const { deliver, pipeline } = harness({ config, call, deps: { rateLimiter: new RateLimiter(1) } });
    deliver(source, { entrypoint: 'first' });
    deliver(source, { entrypoint: 'second' });
    const third = deliver(source, { entrypoint: 'third' });
    await settle();
    assert.equal(await pipeline.drain(2_000), 1);
    assert.deepEqual(sent, ['first', 'second']);
    assert.deepEqual(third.calls, []);
  });

  it('abandons a circuit permit for a delivery the enqueuer did not send', async () => {
    const enqueuer: Enqueuer = { enqueue: async () => NOT_SENT };
    const { deliver, pipeline } = harness({ config, enqueuer });
    const delivery = deliver(source, { entrypoint: 'a' });
    await settle();
    assert.equal(pipeline.active, 0);
    assert.deepEqual(delivery.calls, [], 'left to the broker, which owns it again');
  });
});

describe('Memory is bounded by bytes', () => {
  const MiB = 1024 * 1024;
  const bounded = testConfig({ intake: { maxInFlightBytes: 6 * MiB } });
  // Just under a MiB each, envelope included. While its call is worked on, each delivery holds
  // its body, the decoded payload and the request body with the payload as hex: just under 4 MiB.
  const big = (entrypoint: string) => ({ entrypoint, payload: { blob: 'x'.repeat(MiB - 100) } });

  it('counts what a call holds, not only the message, and gives it back when the call is done', async () => {
    const calls = new HeldCalls();
    const { deliver, metrics } = harness({ config: bounded, call: calls.call });
    const delivery = deliver(source, big('1'));
    await settle();
    const held = await metricValue(metrics, 'pgq_bridge_in_flight_bytes', {});
    assert.ok(held !== undefined && held > 4 * MiB - 1024 && held < 4 * MiB, `held ${held} bytes`);
    calls.answerOldest();
    await until(() => delivery.settled === 'ack');
    assert.equal(await metricValue(metrics, 'pgq_bridge_in_flight_bytes', {}), 0);
  });

  it('gives back what a delivery that is not called holds: only its body was counted', async () => {
    const { deliver, metrics } = harness({ config: bounded, call: new HeldCalls().call });
    const refused = deliver(source, { entrypoint: 1, payload: { blob: 'x'.repeat(MiB) } });
    await until(() => refused.settled === 'ack');
    assert.equal(await metricValue(metrics, 'pgq_bridge_in_flight_bytes', {}), 0);
  });

  it('reports pressure past the budget, hands back arrivals past twice it, and clears below half', async () => {
    const calls = new HeldCalls();
    const { deliver, memory, metrics } = harness({ config: bounded, call: calls.call });
    const first = deliver(source, big('1'));
    assert.deepEqual(memory, [], 'one call of just under 4 MiB is within 6');
    const kept = [first, deliver(source, big('2'))];
    assert.deepEqual(memory, [true], 'over the budget: intake should pause');
    const late = deliver(source, big('3'));
    const later = deliver(source, big('4'));
    assert.equal(late.settled, undefined, 'its body still fits under twice the budget');
    assert.equal(later.settled, 'requeue', 'past twice the budget: back to the broker at once');
    assert.equal(await metricValue(metrics, 'pgq_bridge_requeued_total', { queue: 'c', why: 'memory' }), 1);
    await settle();
    calls.answerOldest();
    calls.answerOldest();
    await until(() => kept.every((d) => d.settled === 'ack'));
    assert.deepEqual(memory, [true], 'one call of 4 MiB left is not below half of the budget yet');
    calls.answerOldest();
    await until(() => late.settled === 'ack');
    assert.deepEqual(memory, [true, false]);
  });
});
