import { setMaxListeners } from 'node:events';
import type { Logger } from 'pino';
import type { Config, SourceConfig } from '../config/config.ts';
import { toError } from '../errors.ts';
import type { EnqueueArgs } from '../message/args.ts';
import { type DecodeResult, decodeMessage } from '../message/decode.ts';
import { identify } from '../message/identity.ts';
import type { Policy } from '../message/policy.ts';
import type { Metrics } from '../metrics.ts';
import type { Outcome } from '../postgrest/classify.ts';
import type { Attempt, Enqueuer } from '../postgrest/enqueuer.ts';
import { NOT_SENT } from '../postgrest/enqueuer.ts';
import { backoffDelay, retryDelay } from '../resilience/backoff.ts';
import type { Circuit } from '../resilience/circuit.ts';
import type { RateLimiter } from '../resilience/rate-limit.ts';
import { sleep } from '../resilience/sleep.ts';
import { ByteBudget } from './budget.ts';
import { type Action, type DeliveryEvent, decide } from './decide.ts';
import { type Delivery, deliveryFields, type SettlePort } from './delivery.ts';
import { logFailure, repeatedFailure, rpcReason } from './describe.ts';
import { callBytes } from './footprint.ts';
import { HandBackHistory } from './history.ts';
import { Hold } from './hold.ts';
import { Lanes } from './lanes.ts';
import { Settler } from './settle.ts';

/**
 * One delivery is one unit of work from arrival until it is acked or handed back to the broker:
 *
 *   decode ─ invalid ─────────────────────────────────────▶ dead-letter (routed, confirmed) ▶ ack
 *      └ ok ▶ RPC ─ enqueued / duplicate ──────────────────────────────────────────────▶ ack
 *               ├ rejected_by_rpc ─────────────────────────▶ dead-letter (routed, confirmed) ▶ ack
 *               └ transient / endpoint_fault / unknown ▶ hold, back off, retry (through the circuit)
 *
 * What happens after each step is `decide()`'s answer; this file carries it out. A delivery is
 * settled at most once, on its own channel, and never left without an owner: a bug in the path
 * hands it back after a backoff, counts it, and fails readiness until a call succeeds again.
 */

export interface PipelineDeps {
  /** The enqueuer for a source (one per source in batch mode, which batches per source). */
  readonly enqueuer: (source: SourceConfig) => Enqueuer;
  /** Deliveries worked on at once per source: its concurrency, or its prefetch in batch mode. */
  readonly parallelism: (source: SourceConfig) => number;
  readonly settle: SettlePort;
  readonly circuit: Circuit;
  readonly metrics: Metrics;
  readonly logger: Logger;
  readonly retry: Config['retry'];
  readonly policy: Policy;
  readonly rateLimiter?: RateLimiter | undefined;
  /**
   * Bytes held at once (message bodies and what their calls hold, see footprint.ts); past it
   * intake should pause, past twice it arrivals go back.
   */
  readonly maxInFlightBytes: number;
  /** Told when held bytes cross the limit (true) and fall back to half of it (false). */
  readonly onMemoryPressure?: ((over: boolean) => void) | undefined;
  /** Told when `faulty` changes. */
  readonly onHealthChange?: (() => void) | undefined;
}

export class Pipeline {
  readonly #deps: PipelineDeps;
  readonly #lanes: Lanes;
  readonly #budget: ByteBudget;
  readonly #settler: Settler;
  readonly #history = new HandBackHistory();
  readonly #drainSignal = new AbortController();
  /** Calls that succeeded, ever: a delivery compares it with the value when it first failed. */
  #successes = 0;
  /** Unexpected errors in a row with no success between: the hand-back delay grows with them. */
  #bugStreak = 0;
  /** Deliveries left unsettled while draining: the broker gets them back when channels close. */
  #released = 0;
  /** Whether intake was told to pause for memory and not told to resume since. */

  constructor(deps: PipelineDeps) {
    this.#deps = deps;
    this.#lanes = new Lanes(deps.parallelism, deps.metrics, (delivery) => this.#run(delivery));
    this.#budget = new ByteBudget(deps.maxInFlightBytes, deps.onMemoryPressure);
    this.#settler = new Settler({
      port: deps.settle,
      metrics: deps.metrics,
      logger: deps.logger,
      retry: deps.retry,
      history: this.#history,
      draining: () => this.draining,
    });
    deps.metrics.readInFlightFrom(
      () => this.#lanes.counts(),
      () => this.#lanes.bytes,
    );
    // Every held delivery listens for the drain, so more than Node's default of 10 is normal.
    setMaxListeners(0, this.#drainSignal.signal);
  }

  get draining(): boolean {
    return this.#drainSignal.signal.aborted;
  }

  /** Deliveries received and not yet finished. */
  get active(): number {
    return this.#lanes.active;
  }

  /** An unexpected error happened and no call has succeeded since: something is broken. */
  get faulty(): boolean {
    return this.#bugStreak > 0;
  }

  handle(delivery: Delivery): void {
    if (!this.#budget.admits(this.#lanes.bytes, delivery.body.length)) {
      this.#settler.handBack(delivery, 'memory');
      return;
    }
    this.#lanes.add(delivery);
    this.#budget.check(this.#lanes.bytes);
  }

  /**
   * Stops starting work, abandons backoff waits, and waits (up to `graceMs`) for calls already
   * in flight to finish and be acked. Returns how many deliveries were left unsettled, still in
   * flight or let go: the broker gets them back when their channels close.
   */
  async drain(graceMs: number): Promise<number> {
    this.#drainSignal.abort();
    await this.#lanes.idle(graceMs);
    return this.#released + this.active;
  }

  async #run(delivery: Delivery): Promise<void> {
    const hold = new Hold(delivery, this.#drainSignal.signal, this.#deps.retry.maxHoldMs);
    let charged = 0;
    try {
      if (this.draining || !delivery.live) return;
      const message = { body: delivery.body, properties: delivery.attributes };
      const decoded = identify(decodeMessage(message, delivery.source), message, delivery.source.idempotency);
      if (decoded.ok) {
        charged = callBytes(delivery.body, decoded.args);
        this.#lanes.charge(charged);
        this.#budget.check(this.#lanes.bytes);
      }
      await this.#process(delivery, decoded, hold);
    } catch (error) {
      await this.#afterBug(delivery, hold, error);
    } finally {
      hold.dispose();
      if (delivery.live && this.draining) this.#released++;
      this.#lanes.done(delivery, charged);
      this.#budget.check(this.#lanes.bytes);
    }
  }

  /** Synchronous up to the first I/O: decoding needs no frame of its own. */
  #process(delivery: Delivery, decoded: DecodeResult, hold: Hold): Promise<void> | undefined {
    const rejection = decoded.ok ? this.#deps.policy.check(decoded.args) : decoded.error;
    if (rejection !== undefined) {
      const action = this.#decide({ kind: 'invalid_message' }, delivery, hold, 0, false);
      if (action.kind !== 'dead_letter') return;
      return this.#settler.deadLetter(
        delivery,
        { kind: 'invalid_message', reason: rejection.reason, message: rejection.message },
        hold,
      );
    }
    return decoded.ok ? this.#enqueue(delivery, decoded.args, hold) : undefined;
  }

  async #enqueue(delivery: Delivery, args: EnqueueArgs, hold: Hold): Promise<void> {
    const { circuit, metrics, retry, rateLimiter } = this.#deps;
    const enqueuer = this.#deps.enqueuer(delivery.source);
    const queue = delivery.source.queue;
    const sendable = (): boolean => delivery.live && !hold.aborted;
    let failures = 0;
    let successesAtFirstFailure = 0;
    for (;;) {
      if (circuit.isOpen || circuit.ramping) await circuit.permit(hold.signal);
      if (rateLimiter !== undefined && sendable()) await rateLimiter.take(hold.signal);
      if (!sendable()) {
        circuit.abandon();
        return this.#letGo(delivery, hold);
      }
      const generation = circuit.generation;
      const started = performance.now();
      let attempt: Attempt | typeof NOT_SENT;
      try {
        attempt = await enqueuer.enqueue(args, sendable);
      } catch (error) {
        // The call was granted but never made: if it was the circuit's probe, the next waiter
        // must get it, or the circuit stays open with intake off and nothing scheduled.
        circuit.abandon();
        throw error;
      }
      if (attempt === NOT_SENT) {
        circuit.abandon();
        return this.#letGo(delivery, hold);
      }
      const { outcome } = attempt;
      metrics.rpcDuration.observe({ outcome: outcome.kind }, (performance.now() - started) / 1000);
      if (answered(outcome)) {
        circuit.success();
        this.#successes++;
        if (this.#bugStreak > 0) {
          this.#bugStreak = 0;
          this.#deps.onHealthChange?.();
        }
      } else {
        if (failures === 0) successesAtFirstFailure = this.#successes;
        failures++;
        circuit.failure(outcome.kind === 'endpoint_fault' ? 'endpoint_fault' : 'transient', generation);
        metrics.retries.inc({ queue, kind: outcome.kind });
        if (outcome.kind === 'transient' && outcome.ambiguous) metrics.ambiguousRetries.inc({ queue });
        logFailure(this.#deps.logger, delivery, args, attempt, failures);
      }
      const othersSucceeded = this.#successes > successesAtFirstFailure;
      const action = this.#decide({ kind: 'rpc', outcome }, delivery, hold, failures, othersSucceeded);
      if (action.kind !== 'retry') return this.#act(action, delivery, hold, args, attempt, failures);
      // While the circuit is open its probe schedule is the backoff: waiting in permit() lets it
      // see that deliveries are held, so it probes with one of them instead of re-enabling intake.
      if (action.via === 'circuit' || circuit.isOpen) continue;
      const retryAfterMs = outcome.kind === 'transient' ? outcome.retryAfterMs : 0;
      await sleep(retryDelay(failures - 1, retry, retryAfterMs), hold.signal);
    }
  }

  #decide(
    event: DeliveryEvent,
    delivery: Delivery,
    hold: Hold,
    failures: number,
    othersSucceeded: boolean,
  ): Action {
    return decide(
      event,
      {
        live: delivery.live,
        draining: this.draining,
        failures,
        othersSucceeded,
        priorDeliveries: this.#history.priorDeliveries(delivery),
        heldMs: hold.heldMs,
      },
      this.#deps.retry,
    );
  }

  #act(
    action: Action,
    delivery: Delivery,
    hold: Hold,
    args: EnqueueArgs,
    attempt: Attempt,
    failures: number,
  ): Promise<void> | undefined {
    switch (action.kind) {
      case 'ack':
        return this.#settler.ack(
          delivery,
          args,
          action.as,
          attempt.outcome.kind === 'enqueued' || attempt.outcome.kind === 'replayed'
            ? attempt.outcome.jobId
            : undefined,
        );
      case 'dead_letter': {
        const reason =
          action.as === 'repeated_failure'
            ? repeatedFailure(attempt.result, failures, this.#history.priorDeliveries(delivery) + 1)
            : rpcReason(attempt.result, 'rejected_by_rpc');
        return this.#settler.deadLetter(delivery, reason, hold);
      }
      case 'hand_back':
        this.#settler.handBack(delivery, action.why);
        return;
      case 'release':
      case 'retry':
        return;
    }
  }

  /** The hold ended (held too long, channel lost, draining): hand back only in the first case. */
  #letGo(delivery: Delivery, hold: Hold): void {
    if (delivery.live && !this.draining && hold.aborted) {
      this.#settler.handBack(delivery, 'held_too_long');
    }
  }

  async #afterBug(delivery: Delivery, hold: Hold, error: unknown): Promise<void> {
    const { metrics, logger, retry } = this.#deps;
    if (this.#bugStreak++ === 0) this.#deps.onHealthChange?.();
    metrics.internalErrors.inc({ queue: delivery.source.queue });
    logger.error(
      { ...deliveryFields(delivery), err: toError(error), outcome: 'internal_error' },
      'unexpected error while handling the delivery; handing it back after a backoff',
    );
    const action = this.#decide({ kind: 'internal_error' }, delivery, hold, 0, false);
    if (action.kind !== 'hand_back') return;
    // Not at once: a bug that hits every message would turn into a redelivery loop.
    const delay = Math.max(retry.initialDelayMs, backoffDelay(this.#bugStreak - 1, retry));
    await sleep(delay, hold.signal);
    if (!this.draining) this.#settler.handBack(delivery, 'internal_error');
  }
}

/** The endpoint answered for the message itself: it is healthy, whatever the answer was. */
function answered(outcome: Outcome): boolean {
  return (
    outcome.kind === 'enqueued' ||
    outcome.kind === 'replayed' ||
    outcome.kind === 'duplicate' ||
    outcome.kind === 'rejected_by_rpc'
  );
}
