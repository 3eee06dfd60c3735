import type { Logger } from 'pino';
import type { Config } from '../config/config.ts';
import type { EnqueueArgs } from '../message/args.ts';
import type { Metrics, Tally } from '../metrics.ts';
import { retryDelay } from '../resilience/backoff.ts';
import { sleep } from '../resilience/sleep.ts';
import { decide } from './decide.ts';
import {
  type DeadLetterReason,
  type Delivery,
  deliveryFields,
  type PublishResult,
  type ReplyBody,
  replyTo,
  type SettlePort,
} from './delivery.ts';
import type { HandBackHistory } from './history.ts';
import type { Hold } from './hold.ts';

/**
 * The last step of a delivery: ack, dead-letter then ack, or hand back. Every ack, requeue and
 * dead letter of the pipeline goes through here, with its metric and its log line.
 *
 * - An ack follows a job id (or a dedupe hit). A reply the publisher asked for is sent first,
 *   once; if it cannot be delivered the message is acked anyway (its job exists, and sending it
 *   round again would only make another), and the failure is logged and counted.
 * - A dead letter is acked only once the broker routed it to a queue and confirmed it. Until
 *   then it is retried while the delivery is held, then handed back.
 */

export interface SettleContext {
  readonly port: SettlePort;
  readonly metrics: Metrics;
  readonly logger: Logger;
  readonly retry: Config['retry'];
  readonly history: HandBackHistory;
  readonly draining: () => boolean;
}

export type HandBackWhy = 'held_too_long' | 'repeated_failure' | 'internal_error' | 'memory';

export class Settler {
  readonly #context: SettleContext;
  readonly #enqueued = new Map<string, Tally<'queue'>>();

  constructor(context: SettleContext) {
    this.#context = context;
  }

  /** Acks a delivery whose job exists; resolves once any reply was tried. */
  async ack(
    delivery: Delivery,
    args: EnqueueArgs,
    as: 'enqueued' | 'duplicate' | 'replayed',
    jobId: string | undefined,
  ): Promise<void> {
    const { metrics, logger } = this.#context;
    if (replyTo(delivery) !== undefined) await this.#reply(delivery, REPLY_BODIES[as](args), jobId);
    if (!delivery.ack()) {
      // The channel went away after the job was written: the broker redelivers the message, and
      // with a dedupe key the second call ends as a duplicate.
      logger.warn(
        { ...deliveryFields(delivery), entrypoint: args.entrypoint, outcome: as },
        'job written but the channel was lost before the ack; the message will be redelivered',
      );
      return;
    }
    this.#context.history.settled(delivery);
    if (as === 'enqueued') {
      this.#enqueuedTally(delivery.source.queue).inc();
      if (logger.isLevelEnabled('debug')) {
        logger.debug(
          { ...deliveryFields(delivery), entrypoint: args.entrypoint, jobId, outcome: 'enqueued' },
          'enqueued',
        );
      }
      return;
    }
    if (as === 'replayed') {
      metrics.replayed.inc({ queue: delivery.source.queue });
      logger.info(
        { ...deliveryFields(delivery), entrypoint: args.entrypoint, jobId, outcome: 'replayed' },
        'message already enqueued (idempotency ledger); acked with its first job',
      );
      return;
    }
    metrics.duplicates.inc({ queue: delivery.source.queue });
    logger.info(
      {
        ...deliveryFields(delivery),
        entrypoint: args.entrypoint,
        dedupeKey: args.dedupeKey,
        outcome: 'duplicate',
      },
      'dedupe key already queued; acked as a duplicate',
    );
  }

  #enqueuedTally(queue: string): Tally<'queue'> {
    let tally = this.#enqueued.get(queue);
    if (tally === undefined) {
      tally = this.#context.metrics.enqueued.tally({ queue });
      this.#enqueued.set(queue, tally);
    }
    return tally;
  }

  async deadLetter(delivery: Delivery, reason: DeadLetterReason, hold: Hold): Promise<void> {
    const { port, metrics, logger, retry } = this.#context;
    const queue = delivery.source.queue;
    for (let attempt = 0; ; attempt++) {
      // A delivery whose channel is gone is redelivered: dead-lettering it too would make two.
      if (!delivery.live || this.#context.draining()) return;
      const published = await port.deadLetter(delivery, reason);
      if (published.ok) break;
      metrics.retries.inc({ queue, kind: 'dead_letter_publish' });
      this.#logPublishFailure(delivery, published, attempt, 'dead letter');
      const action = decide(
        { kind: 'dead_letter_failed' },
        {
          live: delivery.live,
          draining: this.#context.draining(),
          failures: attempt + 1,
          othersSucceeded: false,
          priorDeliveries: delivery.origin.priorDeliveries,
          heldMs: hold.heldMs,
        },
        retry,
      );
      if (action.kind === 'hand_back') return this.handBack(delivery, 'held_too_long');
      if (action.kind !== 'retry') return;
      await sleep(retryDelay(attempt, retry, 0), hold.signal);
      if (hold.signal.aborted && delivery.live && !this.#context.draining()) {
        return this.handBack(delivery, 'held_too_long');
      }
    }
    if (replyTo(delivery) !== undefined) {
      await this.#reply(delivery, {
        status: 'dead_lettered',
        kind: reason.kind,
        reason: reason.reason,
        message: reason.message,
        dead_letter_queue: delivery.source.deadLetterQueue,
      });
    }
    const acked = delivery.ack();
    if (acked) {
      metrics.deadLettered.inc({ queue, kind: reason.kind, reason: reason.reason });
      this.#context.history.settled(delivery);
    }
    logger.warn(
      {
        ...deliveryFields(delivery),
        outcome: 'dead_lettered',
        kind: reason.kind,
        reason: reason.reason,
        httpStatus: reason.httpStatus,
        code: reason.postgrestCode,
        deadLetterQueue: delivery.source.deadLetterQueue,
        acked,
      },
      `dead-lettered: ${reason.message}`,
    );
  }

  /** Returns the delivery to its queue (nack + requeue) unless the broker already has it back. */
  handBack(delivery: Delivery, why: HandBackWhy): void {
    if (!delivery.requeue()) return;
    if (why === 'repeated_failure') this.#context.history.handedBack(delivery);
    this.#context.metrics.requeued.inc({ queue: delivery.source.queue, why });
    this.#context.logger.warn(
      { ...deliveryFields(delivery), outcome: 'requeued', why, heldMs: Date.now() - delivery.receivedAt },
      HAND_BACK_MESSAGES[why],
    );
  }

  async #reply(delivery: Delivery, body: ReplyBody, jobId?: string): Promise<void> {
    const { port, metrics } = this.#context;
    const queue = delivery.source.queue;
    const sent = await port.reply(delivery, body, jobId);
    if (sent.ok) {
      metrics.replies.inc({ queue, status: body.status });
      return;
    }
    metrics.replyFailures.inc({ queue, kind: sent.kind });
    this.#logPublishFailure(delivery, sent, 0, 'reply');
  }

  #logPublishFailure(
    delivery: Delivery,
    failure: Extract<PublishResult, { ok: false }>,
    attempt: number,
    what: 'dead letter' | 'reply',
  ): void {
    const { logger } = this.#context;
    const level = attempt === 0 ? 'warn' : 'debug';
    if (!logger.isLevelEnabled(level)) return;
    const routingKey = what === 'reply' ? replyTo(delivery) : delivery.source.deadLetterQueue;
    logger[level](
      {
        ...deliveryFields(delivery),
        publishFailure: failure.kind,
        error: failure.message,
        routingKey,
        attempt,
      },
      what === 'reply'
        ? 'the reply could not be delivered; the message is acked anyway (its job exists)'
        : 'the dead letter was not routed and confirmed; holding the message and retrying',
    );
  }
}

/**
 * What a reply_to gets. A replay says `enqueued` with the first delivery's job id, as the first
 * reply did, so a publisher waiting for it needs no second case; `replayed` tells the two apart.
 */
const REPLY_BODIES: Readonly<
  Record<'enqueued' | 'duplicate' | 'replayed', (args: EnqueueArgs) => ReplyBody>
> = {
  enqueued: () => ({ status: 'enqueued' }),
  replayed: () => ({ status: 'enqueued', replayed: true }),
  duplicate: (args) => ({ status: 'duplicate', dedupe_key: args.dedupeKey }),
};

const HAND_BACK_MESSAGES: Readonly<Record<HandBackWhy, string>> = {
  held_too_long: 'held too long without success; returned to the queue',
  repeated_failure: 'failing while other messages succeed; returned to the queue for a later try',
  internal_error: 'unexpected error while handling the delivery; returned to the queue',
  memory: 'in-flight bytes over the limit; returned to the queue',
};
