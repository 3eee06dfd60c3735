import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type Action, type DeliveryEvent, type DeliveryFacts, decide } from '../../src/pipeline/decide.ts';
import type { Outcome } from '../../src/postgrest/classify.ts';

const RULES = { maxHoldMs: 60_000, poisonAttempts: 3, maxDeliveries: 5 };
const FACTS: DeliveryFacts = {
  live: true,
  draining: false,
  failures: 0,
  othersSucceeded: false,
  priorDeliveries: 0,
  heldMs: 0,
};
const rpc = (outcome: Outcome): DeliveryEvent => ({ kind: 'rpc', outcome });
const transient: Outcome = { kind: 'transient', retryAfterMs: 0, ambiguous: false };

/** The table of decide.ts, row by row: event, facts that differ from a fresh delivery, action. */
const ROWS: ReadonlyArray<readonly [string, DeliveryEvent, Partial<DeliveryFacts>, Action]> = [
  ['channel gone', rpc({ kind: 'enqueued', jobId: '1' }), { live: false }, { kind: 'release', why: 'lost' }],
  ['enqueued', rpc({ kind: 'enqueued', jobId: '1' }), {}, { kind: 'ack', as: 'enqueued' }],
  [
    'enqueued while draining',
    rpc({ kind: 'enqueued', jobId: '1' }),
    { draining: true },
    { kind: 'ack', as: 'enqueued' },
  ],
  ['duplicate', rpc({ kind: 'duplicate' }), {}, { kind: 'ack', as: 'duplicate' }],
  ['replayed', rpc({ kind: 'replayed', jobId: '1' }), {}, { kind: 'ack', as: 'replayed' }],
  [
    'replayed while draining',
    rpc({ kind: 'replayed', jobId: '1' }),
    { draining: true },
    { kind: 'ack', as: 'replayed' },
  ],
  [
    'replayed, channel gone',
    rpc({ kind: 'replayed', jobId: '1' }),
    { live: false },
    { kind: 'release', why: 'lost' },
  ],
  ['invalid message', { kind: 'invalid_message' }, {}, { kind: 'dead_letter', as: 'invalid_message' }],
  [
    'invalid while draining',
    { kind: 'invalid_message' },
    { draining: true },
    { kind: 'release', why: 'draining' },
  ],
  ['rejected', rpc({ kind: 'rejected_by_rpc' }), {}, { kind: 'dead_letter', as: 'rejected_by_rpc' }],
  ['bug', { kind: 'internal_error' }, {}, { kind: 'hand_back', why: 'internal_error' }],
  [
    'endpoint fault',
    rpc({ kind: 'endpoint_fault' }),
    { failures: 9, othersSucceeded: true },
    { kind: 'retry', via: 'circuit' },
  ],
  [
    'endpoint fault held too long',
    rpc({ kind: 'endpoint_fault' }),
    { heldMs: 60_000 },
    { kind: 'hand_back', why: 'held_too_long' },
  ],
  [
    'unknown, its own fault',
    rpc({ kind: 'unknown' }),
    { failures: 3, othersSucceeded: true },
    { kind: 'dead_letter', as: 'repeated_failure' },
  ],
  [
    'transient, its own fault',
    rpc(transient),
    { failures: 3, othersSucceeded: true },
    { kind: 'hand_back', why: 'repeated_failure' },
  ],
  [
    'transient, its own fault, last delivery',
    rpc(transient),
    { failures: 3, othersSucceeded: true, priorDeliveries: 4 },
    { kind: 'dead_letter', as: 'repeated_failure' },
  ],
  ['transient', rpc(transient), { failures: 1 }, { kind: 'retry', via: 'backoff' }],
  [
    'transient held too long',
    rpc(transient),
    { heldMs: 60_000 },
    { kind: 'hand_back', why: 'held_too_long' },
  ],
  ['dead letter not confirmed', { kind: 'dead_letter_failed' }, {}, { kind: 'retry', via: 'backoff' }],
];

describe('decide', () => {
  for (const [name, event, facts, action] of ROWS) {
    it(name, () => assert.deepEqual(decide(event, { ...FACTS, ...facts }, RULES), action));
  }
});
