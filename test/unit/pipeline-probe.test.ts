import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { pino } from 'pino';
import { parseConfig, type SourceConfig } from '../../src/config/config.ts';
import type { EnqueueArgs } from '../../src/message/args.ts';
import { createPolicy } from '../../src/message/policy.ts';
import { Metrics } from '../../src/metrics.ts';
import type { Delivery } from '../../src/pipeline/delivery.ts';
import { Pipeline } from '../../src/pipeline/pipeline.ts';
import type { RpcResult } from '../../src/postgrest/client.ts';
import { singleEnqueuer } from '../../src/postgrest/enqueuer.ts';
import { Circuit } from '../../src/resilience/circuit.ts';
import { until } from '../support/pipeline.ts';

/**
 * The circuit's probe is a delivery's call. When that call throws instead of answering (a bug
 * in the request path), the probe must still end, or the circuit stays open with intake paused
 * and no probe scheduled: nothing is consumed again.
 */

const config = parseConfig({
  amqp: { url: 'amqp://localhost' },
  postgrest: { url: 'http://localhost:3000' },
  sources: [{ queue: 'probe', concurrency: 1 }],
  retry: { initialDelayMs: 5, maxDelayMs: 20, maxHoldMs: 1000 },
});
const source = config.sources[0] as SourceConfig;

type Settled = 'pending' | 'acked' | 'requeued';

function delivery(entrypoint: string): Delivery & { readonly settled: Settled } {
  let settled: Settled = 'pending';
  return {
    source,
    body: Buffer.from(JSON.stringify({ entrypoint })),
    attributes: {},
    origin: { exchange: '', routingKey: 'probe', redelivered: false, priorDeliveries: 0, tag: 1 },
    receivedAt: Date.now(),
    lost: new AbortController().signal,
    get live() {
      return settled === 'pending';
    },
    get settled() {
      return settled;
    },
    ack() {
      if (settled !== 'pending') return false;
      settled = 'acked';
      return true;
    },
    requeue() {
      if (settled !== 'pending') return false;
      settled = 'requeued';
      return true;
    },
  };
}

describe('Pipeline with an open circuit', () => {
  it('probes again after the probe call threw', async () => {
    // The first call opens the circuit (an endpoint fault), the probe throws, then all is well.
    const answers: Array<() => Promise<RpcResult>> = [
      async () => ({
        kind: 'http_error',
        status: 404,
        code: 'PGRST202',
        message: 'Could not find the function',
        details: null,
        hint: null,
        retryAfterMs: 0,
      }),
      () => {
        throw new TypeError('Invalid character in header content ["authorization"]');
      },
    ];
    let jobs = 0;
    const call = (_args: EnqueueArgs): Promise<RpcResult> =>
      answers.shift()?.() ?? Promise.resolve({ kind: 'enqueued', jobId: String(++jobs) });
    const intake: boolean[] = [];
    const circuit = new Circuit({
      failureThreshold: 5,
      backoff: config.retry,
      onIntake: (allowed) => intake.push(allowed),
      onOpen: () => {},
      onClose: () => {},
    });
    const pipeline = new Pipeline({
      enqueuer: () => singleEnqueuer(call, config.postgrest.dedupeConstraint),
      parallelism: () => 1,
      settle: {
        deadLetter: async () => assert.fail('nothing is dead-lettered'),
        reply: async () => ({ ok: true }),
      },
      circuit,
      metrics: new Metrics({ processMetrics: false }),
      logger: pino({ level: 'silent' }),
      retry: config.retry,
      policy: createPolicy(config.policy),
      maxInFlightBytes: config.intake.maxInFlightBytes,
    });

    const first = delivery('first');
    pipeline.handle(first);
    await until(() => first.settled !== 'pending', 2000);
    assert.equal(first.settled, 'requeued', 'the delivery whose call threw is handed back');

    // Intake went off when the circuit opened; the next delivery (as if intake came back, or
    // one already on the wire) must get a probe and close the circuit.
    const second = delivery('second');
    pipeline.handle(second);
    await until(() => second.settled !== 'pending', 2000);
    assert.equal(second.settled, 'acked', 'a later delivery probes, succeeds and is acked');
    assert.equal(circuit.isOpen, false);
    assert.equal(intake.at(-1), true, 'intake is on again');
    circuit.close();
  });
});
