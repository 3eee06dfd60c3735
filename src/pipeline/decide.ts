import type { Outcome } from '../postgrest/classify.ts';

/**
 * The delivery rules, as one pure function: given what just happened to a delivery and what is
 * known about it, the next thing to do. The pipeline only carries the action out, so every rule
 * is in this file and in its table test.
 *
 * | event                       | condition                                  | action                   |
 * |-----------------------------|--------------------------------------------|--------------------------|
 * | any                         | the delivery's channel is gone             | release (lost)           |
 * | enqueued / duplicate        |                                            | ack                      |
 * | replayed (ledger knew it)   |                                            | ack, with the first job  |
 * | any other                   | draining for shutdown                      | release (draining)       |
 * | invalid message             |                                            | dead-letter              |
 * | rejected_by_rpc             |                                            | dead-letter              |
 * | internal error (a bug)      |                                            | hand back after backoff  |
 * | endpoint_fault              | held past maxHoldMs                        | hand back                |
 * | endpoint_fault              | otherwise (never dead-lettered)            | retry through circuit    |
 * | unknown                     | poisonAttempts failures, others succeeded  | dead-letter (repeated)   |
 * | transient                   | same, and maxDeliveries reached            | dead-letter (repeated)   |
 * | transient                   | same, deliveries left                      | hand back                |
 * | transient / unknown         | held past maxHoldMs                        | hand back                |
 * | transient / unknown         | otherwise                                  | retry after backoff      |
 * | dead letter not confirmed   | held past maxHoldMs                        | hand back                |
 * | dead letter not confirmed   | otherwise                                  | retry after backoff      |
 *
 * "Others succeeded" means some call for another message succeeded after this delivery started
 * failing: then the failure is this message's, not the endpoint's. A transient failure (a
 * statement timeout on one huge payload) gets more chances than an unexplained one: it goes
 * back to the queue and is dead-lettered only after `maxDeliveries` deliveries.
 */

export type DeliveryEvent =
  | { readonly kind: 'invalid_message' }
  | { readonly kind: 'rpc'; readonly outcome: Outcome }
  | { readonly kind: 'internal_error' }
  | { readonly kind: 'dead_letter_failed' };

export interface DeliveryFacts {
  readonly live: boolean;
  readonly draining: boolean;
  /** Failed calls of this delivery so far, the current one included. */
  readonly failures: number;
  readonly othersSucceeded: boolean;
  /** Deliveries of this message before this one. */
  readonly priorDeliveries: number;
  readonly heldMs: number;
}

/** The limits the rules use; the `retry` section of the config carries them. */
export interface Rules {
  readonly maxHoldMs: number;
  readonly poisonAttempts: number;
  readonly maxDeliveries: number;
}

export type Action =
  | { readonly kind: 'ack'; readonly as: 'enqueued' | 'duplicate' | 'replayed' }
  | { readonly kind: 'dead_letter'; readonly as: 'invalid_message' | 'rejected_by_rpc' | 'repeated_failure' }
  | { readonly kind: 'retry'; readonly via: 'backoff' | 'circuit' }
  | {
      readonly kind: 'hand_back';
      readonly why: 'held_too_long' | 'repeated_failure' | 'internal_error';
    }
  | { readonly kind: 'release'; readonly why: 'lost' | 'draining' };

const ACK_ENQUEUED: Action = { kind: 'ack', as: 'enqueued' };
const ACK_DUPLICATE: Action = { kind: 'ack', as: 'duplicate' };
const ACK_REPLAYED: Action = { kind: 'ack', as: 'replayed' };
const LOST: Action = { kind: 'release', why: 'lost' };
const DRAINING: Action = { kind: 'release', why: 'draining' };
const HELD_TOO_LONG: Action = { kind: 'hand_back', why: 'held_too_long' };
const RETRY: Action = { kind: 'retry', via: 'backoff' };

export function decide(event: DeliveryEvent, facts: DeliveryFacts, rules: Rules): Action {
  if (!facts.live) return LOST;
  if (event.kind === 'rpc') return afterCall(event.outcome, facts, rules);
  // A job that exists is acked even while draining; everything else waits for the next run.
  if (facts.draining) return DRAINING;
  switch (event.kind) {
    case 'invalid_message':
      return { kind: 'dead_letter', as: 'invalid_message' };
    case 'internal_error':
      return { kind: 'hand_back', why: 'internal_error' };
    case 'dead_letter_failed':
      return facts.heldMs >= rules.maxHoldMs ? HELD_TOO_LONG : RETRY;
  }
}

function afterCall(outcome: Outcome, facts: DeliveryFacts, rules: Rules): Action {
  switch (outcome.kind) {
    case 'enqueued':
      return ACK_ENQUEUED;
    case 'duplicate':
      return ACK_DUPLICATE;
    case 'replayed':
      return ACK_REPLAYED;
    case 'rejected_by_rpc':
      return facts.draining ? DRAINING : { kind: 'dead_letter', as: 'rejected_by_rpc' };
    case 'endpoint_fault':
      if (facts.draining) return DRAINING;
      return facts.heldMs >= rules.maxHoldMs ? HELD_TOO_LONG : { kind: 'retry', via: 'circuit' };
    case 'transient':
    case 'unknown': {
      if (facts.draining) return DRAINING;
      const itsOwnFault = facts.failures >= rules.poisonAttempts && facts.othersSucceeded;
      if (itsOwnFault && outcome.kind === 'unknown') return { kind: 'dead_letter', as: 'repeated_failure' };
      if (itsOwnFault) {
        return facts.priorDeliveries + 1 >= rules.maxDeliveries
          ? { kind: 'dead_letter', as: 'repeated_failure' }
          : { kind: 'hand_back', why: 'repeated_failure' };
      }
      return facts.heldMs >= rules.maxHoldMs ? HELD_TOO_LONG : RETRY;
    }
  }
}
