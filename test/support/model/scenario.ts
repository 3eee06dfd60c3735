import fc from 'fast-check';
import type { CallFault } from './endpoint.ts';

/**
 * One random run: the bridge's settings, the messages and when they are published, what the
 * endpoint answers call by call, and the broker faults over time. After `healAt` the endpoint
 * and the broker are healthy, and everything must drain.
 */

export interface ModelMessage {
  readonly id: string;
  readonly source: number;
  readonly kind: 'ok' | 'refused' | 'invalid';
  readonly dedupeKey: string | undefined;
  readonly replyTo: 'replies' | 'gone' | undefined;
  readonly messageId: boolean;
  readonly at: number;
}

export type BrokerEvent =
  | { readonly kind: 'kill_channel'; readonly pick: number }
  | { readonly kind: 'kill_consumer_connection' }
  | { readonly kind: 'kill_publisher_connection' }
  | { readonly kind: 'broker_down'; readonly ms: number }
  | { readonly kind: 'blocked'; readonly ms: number }
  | { readonly kind: 'delete_dead_letter_queue'; readonly pick: number }
  | { readonly kind: 'confirms'; readonly fault: 'nack' | 'lose'; readonly ms: number };

export interface Scenario {
  readonly batch: boolean;
  readonly seed: number;
  readonly sources: ReadonlyArray<{
    readonly quorum: boolean;
    readonly concurrency: number;
    readonly spare: number;
  }>;
  readonly initialDelayMs: number;
  readonly maxHoldMs: number;
  readonly poisonAttempts: number;
  readonly maxDeliveries: number;
  readonly batchSize: number;
  readonly lingerMs: number;
  readonly messages: readonly ModelMessage[];
  readonly faults: readonly CallFault[];
  readonly events: ReadonlyArray<{ readonly at: number; readonly event: BrokerEvent }>;
  readonly healAt: number;
}

/** The client's timeouts in every run: single call, bulk call, publish confirm. */
export const TIMEOUTS = { single: 500, batch: 1000, confirm: 300 } as const;

const callFault: fc.Arbitrary<CallFault> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ kind: fc.constant('ok' as const), latency: fc.nat(1400) }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'other_conflict' as const }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'reject' as const }) },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('endpoint' as const),
      status: fc.constantFrom(401 as const, 403 as const, 404 as const, 302 as const),
    }),
  },
  { weight: 1, arbitrary: fc.constant({ kind: 'unavailable' as const }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'server_error' as const }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'statement_timeout' as const }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('bad_gateway' as const), commit: fc.boolean() }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('timeout' as const), commit: fc.boolean() }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'refused' as const }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'throw' as const }) },
);

const brokerEvent: fc.Arbitrary<BrokerEvent> = fc.oneof(
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('kill_channel' as const), pick: fc.nat(3) }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'kill_consumer_connection' as const }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'kill_publisher_connection' as const }) },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant('broker_down' as const),
      ms: fc.integer({ min: 10, max: 3000 }),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({ kind: fc.constant('blocked' as const), ms: fc.integer({ min: 10, max: 8000 }) }),
  },
  {
    weight: 2,
    arbitrary: fc.record({ kind: fc.constant('delete_dead_letter_queue' as const), pick: fc.nat(1) }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('confirms' as const),
      fault: fc.constantFrom('nack' as const, 'lose' as const),
      ms: fc.integer({ min: 10, max: 4000 }),
    }),
  },
);

const messageSpec = fc.record({
  source: fc.nat(1),
  kind: fc.oneof(
    { weight: 8, arbitrary: fc.constant('ok' as const) },
    { weight: 1, arbitrary: fc.constant('refused' as const) },
    { weight: 1, arbitrary: fc.constant('invalid' as const) },
  ),
  key: fc.option(fc.nat(6), { freq: 2 }),
  replyTo: fc.option(fc.constantFrom('replies' as const, 'gone' as const), { freq: 3 }),
  messageId: fc.boolean(),
  at: fc.nat(8000),
});

export function scenarioArbitrary(batch: boolean): fc.Arbitrary<Scenario> {
  return fc
    .record({
      seed: fc.nat(),
      sources: fc.array(
        fc.record({ quorum: fc.boolean(), concurrency: fc.integer({ min: 1, max: 4 }), spare: fc.nat(6) }),
        { minLength: 1, maxLength: 2 },
      ),
      initialDelayMs: fc.integer({ min: 20, max: 300 }),
      maxHoldMs: fc.integer({ min: 1000, max: 6000 }),
      poisonAttempts: fc.integer({ min: 1, max: 6 }),
      maxDeliveries: fc.integer({ min: 1, max: 4 }),
      batchSize: fc.integer({ min: 1, max: 8 }),
      lingerMs: fc.nat(10),
      messages: fc.array(messageSpec, { minLength: 1, maxLength: 30 }),
      faults: fc.array(callFault, { maxLength: 60 }),
      events: fc.array(fc.record({ at: fc.nat(15_000), event: brokerEvent }), { maxLength: 8 }),
    })
    .map((raw) => ({
      ...raw,
      batch,
      messages: raw.messages.map(
        (m, i): ModelMessage => ({
          id: `m${i}`,
          source: m.source % raw.sources.length,
          kind: m.kind,
          dedupeKey: m.key === null ? undefined : `k${m.key}`,
          replyTo: m.replyTo ?? undefined,
          messageId: m.messageId,
          at: m.at,
        }),
      ),
      events: [...raw.events].sort((a, b) => a.at - b.at),
      healAt: 20_000,
    }));
}
