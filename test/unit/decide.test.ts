import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  type Action,
  type DeliveryEvent,
  type DeliveryFacts,
  decide,
  type Rules,
} from '../../src/pipeline/decide.ts';
import type { Outcome } from '../../src/postgrest/classify.ts';

/** The table in decide.ts, row by row: each row names the event, the facts that matter, the action. */

const rules: Rules = { maxHoldMs: 60_000, poisonAttempts: 3, maxDeliveries: 5 };
const base: DeliveryFacts = {
  live: true,
  draining: false,
  failures: 1,
  othersSucceeded: false,
  priorDeliveries: 0,
  heldMs: 100,
};

const rpc = (outcome: Outcome): DeliveryEvent => ({ kind: 'rpc', outcome });
const enqueued = rpc({ kind: 'enqueued', jobId: '1' });
const duplicate = rpc({ kind: 'duplicate' });
const replayed = rpc({ kind: 'replayed', jobId: '1' });
const rejected = rpc({ kind: 'rejected_by_rpc' });
const endpointFault = rpc({ kind: 'endpoint_fault' });
const transient = rpc({ kind: 'transient', retryAfterMs: 0, ambiguous: false });
const ambiguous = rpc({ kind: 'transient', retryAfterMs: 0, ambiguous: true });
const unknown = rpc({ kind: 'unknown' });
const invalid: DeliveryEvent = { kind: 'invalid_message' };
const bug: DeliveryEvent = { kind: 'internal_error' };
const deadLetterFailed: DeliveryEvent = { kind: 'dead_letter_failed' };

const ALL_EVENTS = {
  enqueued,
  duplicate,
  replayed,
  rejected,
  endpointFault,
  transient,
  ambiguous,
  unknown,
  invalid,
  bug,
  deadLetterFailed,
};

const poisoned: Partial<DeliveryFacts> = { failures: 3, othersSucceeded: true };
const held: Partial<DeliveryFacts> = { heldMs: 60_000 };

const rows: readonly [string, DeliveryEvent, Partial<DeliveryFacts>, Action][] = [
  ['enqueued → ack', enqueued, {}, { kind: 'ack', as: 'enqueued' }],
  ['duplicate → ack', duplicate, {}, { kind: 'ack', as: 'duplicate' }],
  [
    'enqueued while draining → ack (the job exists)',
    enqueued,
    { draining: true },
    { kind: 'ack', as: 'enqueued' },
  ],
  ['duplicate held too long → ack', duplicate, held, { kind: 'ack', as: 'duplicate' }],
  ['replayed (the ledger knew it) → ack, with the first job', replayed, {}, { kind: 'ack', as: 'replayed' }],
  ['replayed while draining → ack', replayed, { draining: true }, { kind: 'ack', as: 'replayed' }],
  ['invalid message → dead-letter', invalid, {}, { kind: 'dead_letter', as: 'invalid_message' }],
  [
    'invalid message while draining → release',
    invalid,
    { draining: true },
    { kind: 'release', why: 'draining' },
  ],
  ['rejected_by_rpc → dead-letter', rejected, {}, { kind: 'dead_letter', as: 'rejected_by_rpc' }],
  [
    'rejected_by_rpc while draining → release',
    rejected,
    { draining: true },
    { kind: 'release', why: 'draining' },
  ],
  ['internal error → hand back', bug, {}, { kind: 'hand_back', why: 'internal_error' }],
  ['internal error while draining → release', bug, { draining: true }, { kind: 'release', why: 'draining' }],
  ['endpoint_fault → retry through the circuit', endpointFault, {}, { kind: 'retry', via: 'circuit' }],
  [
    'endpoint_fault held past maxHoldMs → hand back',
    endpointFault,
    held,
    { kind: 'hand_back', why: 'held_too_long' },
  ],
  [
    'endpoint_fault while others succeed → still never dead-lettered',
    endpointFault,
    { ...poisoned, priorDeliveries: 10 },
    { kind: 'retry', via: 'circuit' },
  ],
  [
    'endpoint_fault while draining → release',
    endpointFault,
    { draining: true },
    { kind: 'release', why: 'draining' },
  ],
  ['unknown → retry after backoff', unknown, {}, { kind: 'retry', via: 'backoff' }],
  [
    'unknown, poisonAttempts failures, others succeeded → dead-letter (repeated)',
    unknown,
    poisoned,
    { kind: 'dead_letter', as: 'repeated_failure' },
  ],
  [
    'unknown, poisonAttempts failures, nobody else succeeded → retry (the endpoint is down)',
    unknown,
    { failures: 3 },
    { kind: 'retry', via: 'backoff' },
  ],
  [
    'unknown, others succeeded, fewer failures → retry',
    unknown,
    { failures: 2, othersSucceeded: true },
    { kind: 'retry', via: 'backoff' },
  ],
  ['unknown held past maxHoldMs → hand back', unknown, held, { kind: 'hand_back', why: 'held_too_long' }],
  ['transient → retry after backoff', transient, {}, { kind: 'retry', via: 'backoff' }],
  ['transient (ambiguous) → retry after backoff', ambiguous, {}, { kind: 'retry', via: 'backoff' }],
  [
    'transient, its own fault, deliveries left → hand back (repeated)',
    transient,
    { ...poisoned, priorDeliveries: 3 },
    { kind: 'hand_back', why: 'repeated_failure' },
  ],
  [
    'transient, its own fault, maxDeliveries reached → dead-letter (repeated)',
    transient,
    { ...poisoned, priorDeliveries: 4 },
    { kind: 'dead_letter', as: 'repeated_failure' },
  ],
  ['transient held past maxHoldMs → hand back', transient, held, { kind: 'hand_back', why: 'held_too_long' }],
  ['transient while draining → release', transient, { draining: true }, { kind: 'release', why: 'draining' }],
  [
    'dead letter not confirmed → retry after backoff',
    deadLetterFailed,
    {},
    { kind: 'retry', via: 'backoff' },
  ],
  [
    'dead letter not confirmed, held past maxHoldMs → hand back',
    deadLetterFailed,
    held,
    { kind: 'hand_back', why: 'held_too_long' },
  ],
  [
    'dead letter not confirmed while draining → release',
    deadLetterFailed,
    { draining: true },
    { kind: 'release', why: 'draining' },
  ],
];

describe('decide(): the delivery table', () => {
  for (const [name, event, facts, action] of rows) {
    it(name, () => {
      assert.deepEqual(decide(event, { ...base, ...facts }, rules), action);
    });
  }

  for (const [name, event] of Object.entries(ALL_EVENTS)) {
    it(`${name} on a delivery whose channel is gone → release (lost), never settled`, () => {
      for (const facts of [{}, { draining: true }, poisoned, held]) {
        assert.deepEqual(decide(event, { ...base, ...facts, live: false }, rules), {
          kind: 'release',
          why: 'lost',
        });
      }
    });
  }

  it('acks only on a job id, a dedupe-index conflict or a ledger replay, whatever the facts', () => {
    const factSets: Partial<DeliveryFacts>[] = [
      {},
      { draining: true },
      poisoned,
      held,
      { priorDeliveries: 100 },
    ];
    for (const [name, event] of Object.entries(ALL_EVENTS)) {
      for (const facts of factSets) {
        const action = decide(event, { ...base, ...facts }, rules);
        const mayAck = name === 'enqueued' || name === 'duplicate' || name === 'replayed';
        assert.equal(action.kind === 'ack', mayAck, `${name} with ${JSON.stringify(facts)}`);
      }
    }
  });

  it('never dead-letters an endpoint fault, whatever the facts', () => {
    for (const failures of [1, 3, 100]) {
      for (const priorDeliveries of [0, 4, 100]) {
        for (const heldMs of [0, 59_999, 60_000]) {
          const facts = { ...base, failures, othersSucceeded: true, priorDeliveries, heldMs };
          assert.notEqual(decide(endpointFault, facts, rules).kind, 'dead_letter');
        }
      }
    }
  });
});
