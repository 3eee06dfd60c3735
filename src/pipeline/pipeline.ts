import { setMaxListeners } from 'node:events';
import type { Options } from 'amqplib';
import type { Logger } from 'pino';
import type { Delivery } from '../amqp/consumer.ts';
import { buildDeadLetter, type DeadLetterReason } from '../amqp/dead-letter.ts';
import type { Config, SourceConfig } from '../config/config.ts';
import { toError } from '../errors.ts';
import { decodeMessage, type EnqueueArgs } from '../message/decode.ts';
import type { Policy } from '../message/policy.ts';
import type { Metrics, Tally } from '../metrics.ts';
import { classify, type Outcome, retryDelay } from '../postgrest/classify.ts';
import type { RpcResult } from '../postgrest/client.ts';
import type { Circuit } from '../resilience/circuit.ts';
import type { RateLimiter } from '../resilience/rate-limit.ts';
import { sleep } from '../resilience/sleep.ts';

/**
 * One delivery is one unit of work from arrival until it is acked or handed back to the broker:
 *
 *   decode ─ invalid ─────────────────────────────────────▶ dead-letter (confirmed) ▶ ack
 *      └ ok ▶ RPC ─ enqueued / duplicate ──────────────────────────────────────────▶ ack
 *               ├ rejected_by_rpc ─────────────────────────▶ dead-letter (confirmed) ▶ ack
 *               └ transient / endpoint_fault / unknown ▶ hold, back off, retry (through the circuit)
 *
 * Nothing else acks a delivery, and it is settled at most once, on its own channel. A delivery
 * is handed back (nack + requeue) only when it has been held for `retry.maxHoldMs`, so it never
 * outlives RabbitMQ's consumer_timeout; while draining for shutdown it is simply left unacked
 * and the broker requeues it when the channel closes. Nothing is dead-lettered while draining.
 */

export interface Enqueuer {
  enqueue(args: EnqueueArgs): Promise<RpcResult>;
}

export interface Publisher {
  publish(exchange: string, routingKey: string, content: Buffer, options: Options.Publish): Promise<void>;
}

export interface PipelineDeps {
  /** The enqueuer for a source (one per source in batch mode, which batches per source). */
  readonly rpc: (source: SourceConfig) => Enqueuer;
  /** Deliveries worked on at once per source: its concurrency, or its prefetch in batch mode. */
  readonly parallelism: (source: SourceConfig) => number;
  readonly publisher: Publisher;
  readonly circuit: Circuit;
  readonly metrics: Metrics;
  readonly logger: Logger;
  readonly retry: Config['retry'];
  readonly policy: Policy;
  readonly rateLimiter?: RateLimiter | undefined;
}

type FailedOutcome = Extract<Outcome, { kind: 'transient' | 'endpoint_fault' | 'unknown' }>;

/**
 * A source's deliveries: at most `limit` worked on at once, the rest waiting in arrival order.
 * p-limit does the same with several promises and closures per call; every delivery passes
 * through here, up to a prefetch window of them at once, so a plain queue keeps them light.
 */
interface Lane {
  readonly limit: number;
  running: number;
  readonly waiting: Delivery[];
  readonly deliveries: Tally<'queue'>;
  readonly enqueued: Tally<'queue'>;
}

interface Hold {
  readonly signal: AbortSignal;
  dispose(): void;
}

export class Pipeline {
  readonly #deps: PipelineDeps;
  readonly #lanes = new Map<string, Lane>();
  readonly #drainSignal = new AbortController();
  #idle: (() => void) | undefined;
  /** For the poison rule: did any call succeed after a given delivery started failing? */
  #lastSuccessAt = 0;

  constructor(deps: PipelineDeps) {
    this.#deps = deps;
    deps.metrics.readInFlightFrom(() =>
      Array.from(this.#lanes, ([queue, lane]) => [queue, lane.running + lane.waiting.length] as const),
    );
    // Every held delivery listens for the drain, so more than Node's default of 10 is normal.
    setMaxListeners(0, this.#drainSignal.signal);
  }

  get draining(): boolean {
    return this.#drainSignal.signal.aborted;
  }

  /** Deliveries received and not yet finished. */
  get active(): number {
    let active = 0;
    for (const lane of this.#lanes.values()) active += lane.running + lane.waiting.length;
    return active;
  }

  handle(delivery: Delivery): void {
    const lane = this.#laneFor(delivery.source);
    lane.deliveries.inc();
    if (lane.running < lane.limit) void this.#run(lane, delivery);
    else lane.waiting.push(delivery);
  }

  // One async frame for the accounting rather than a promise chain: see Lane.
  async #run(lane: Lane, delivery: Delivery): Promise<void> {
    lane.running++;
    try {
      await this.#process(lane, delivery);
    } catch (error) {
      // A bug, not an outcome: leave the delivery unacked (the broker keeps it) and say so.
      this.#deps.logger.error(
        { ...deliveryFields(delivery), err: toError(error) },
        'unexpected error in the pipeline',
      );
    } finally {
      lane.running--;
      const next = lane.waiting.shift();
      if (next !== undefined) void this.#run(lane, next);
      else if (this.#idle !== undefined && this.active === 0) this.#idle();
    }
  }

  /**
   * Stops starting work, abandons backoff waits, and waits (up to `graceMs`) for calls already
   * in flight to finish and be acked. Returns how many deliveries were still unfinished.
   */
  async drain(graceMs: number): Promise<number> {
    this.#drainSignal.abort();
    if (this.active > 0) {
      // Ends the wait (and its timer, which would otherwise keep the process alive) once idle.
      const idle = new AbortController();
      this.#idle = () => idle.abort();
      await sleep(graceMs, idle.signal);
    }
    return this.active;
  }

  #laneFor(source: SourceConfig): Lane {
    let lane = this.#lanes.get(source.queue);
    if (lane === undefined) {
      const { metrics } = this.#deps;
      const labels = { queue: source.queue };
      lane = {
        limit: this.#deps.parallelism(source),
        running: 0,
        waiting: [],
        deliveries: metrics.deliveries.tally(labels),
        enqueued: metrics.enqueued.tally(labels),
      };
      this.#lanes.set(source.queue, lane);
    }
    return lane;
  }

  /** Synchronous up to the first I/O: decoding needs no frame of its own. */
  #process(lane: Lane, delivery: Delivery): Promise<void> | undefined {
    if (this.draining || !delivery.live) return;
    const { message } = delivery;
    const decoded = decodeMessage(
      {
        body: message.content,
        properties: message.properties as Parameters<typeof decodeMessage>[0]['properties'],
      },
      delivery.source,
    );
    const rejection = decoded.ok ? this.#deps.policy.check(decoded.args) : decoded.error;
    if (rejection !== undefined) {
      return this.#deadLetter(delivery, {
        kind: 'invalid_message',
        reason: rejection.reason,
        message: rejection.message,
      });
    }
    return decoded.ok ? this.#enqueue(lane, delivery, decoded.args) : undefined;
  }

  async #enqueue(lane: Lane, delivery: Delivery, args: EnqueueArgs): Promise<void> {
    const { circuit, metrics, retry } = this.#deps;
    const rpc = this.#deps.rpc(delivery.source);
    const queue = delivery.source.queue;
    const heldSince = Date.now();
    let failures = 0;
    // The hold (its timer and listeners) only exists once something failed: the success path
    // must not pay for a timer per message.
    let hold: Hold | undefined;
    const holdSignal = (): AbortSignal => {
      hold ??= this.#hold(delivery);
      return hold.signal;
    };
    try {
      for (;;) {
        if (circuit.isOpen && !(await circuit.permit(holdSignal())))
          return this.#handBack(delivery, holdSignal());
        if (this.draining || !delivery.live) {
          circuit.abandon();
          return;
        }
        if (this.#deps.rateLimiter !== undefined) await this.#deps.rateLimiter.take();
        const generation = circuit.generation;
        const started = performance.now();
        const result = await rpc.enqueue(args);
        const outcome = classify(result, { hasDedupeKey: args.dedupeKey !== undefined });
        metrics.rpcDuration.observe({ outcome: outcome.kind }, (performance.now() - started) / 1000);

        if (outcome.kind === 'enqueued' || outcome.kind === 'duplicate') {
          circuit.success();
          this.#lastSuccessAt = Date.now();
          // Most messages want no reply; they skip building one and the await with it.
          const replied =
            replyTo(delivery) === undefined ||
            (outcome.kind === 'enqueued'
              ? await this.#reply(delivery, { status: 'enqueued' }, outcome.jobId)
              : await this.#reply(delivery, { status: 'duplicate', dedupe_key: args.dedupeKey }));
          if (replied) this.#ack(lane, delivery, args, outcome);
          return;
        }
        if (outcome.kind === 'rejected_by_rpc') {
          circuit.success();
          await this.#deadLetter(delivery, rpcReason(result, 'rejected_by_rpc'));
          return;
        }

        failures++;
        circuit.failure(outcome.kind === 'endpoint_fault' ? 'endpoint_fault' : 'transient', generation);
        metrics.retries.inc({ queue, kind: outcome.kind });
        if (outcome.kind === 'transient' && outcome.ambiguous) metrics.ambiguousRetries.inc({ queue });
        this.#logFailure(delivery, args, result, outcome, failures);

        // Failing again and again while other messages go through: this message is the problem.
        if (
          outcome.kind !== 'transient' &&
          failures >= retry.poisonAttempts &&
          this.#lastSuccessAt > heldSince
        ) {
          await this.#deadLetter(delivery, {
            ...rpcReason(result, 'rejected_by_rpc'),
            reason: 'repeated_failure',
            message: `failed ${failures} times while other messages succeeded; last error: ${describe(result)}`,
          });
          return;
        }
        // While the circuit is open its probe schedule is the backoff: waiting in permit() lets it
        // see that deliveries are held, so it probes with one of them instead of re-enabling intake.
        if (circuit.isOpen) continue;
        const delay = retryDelay(
          failures - 1,
          retry,
          outcome.kind === 'transient' ? outcome.retryAfterMs : 0,
        );
        if (!(await sleep(delay, holdSignal()))) return this.#handBack(delivery, holdSignal());
      }
    } finally {
      hold?.dispose();
    }
  }

  #ack(
    lane: Lane,
    delivery: Delivery,
    args: EnqueueArgs,
    outcome: Extract<Outcome, { kind: 'enqueued' | 'duplicate' }>,
  ): void {
    const { metrics, logger } = this.#deps;
    const queue = delivery.source.queue;
    if (!delivery.ack()) {
      // The channel went away after the job was written: the broker redelivers the message, and
      // with a dedupe key the second call ends as a duplicate.
      logger.warn(
        { ...deliveryFields(delivery), entrypoint: args.entrypoint, outcome: outcome.kind },
        'job written but the channel was lost before the ack; the message will be redelivered',
      );
      return;
    }
    if (outcome.kind === 'enqueued') {
      lane.enqueued.inc();
      if (logger.isLevelEnabled('debug')) {
        logger.debug(
          {
            ...deliveryFields(delivery),
            entrypoint: args.entrypoint,
            jobId: outcome.jobId,
            outcome: 'enqueued',
          },
          'enqueued',
        );
      }
    } else {
      metrics.duplicates.inc({ queue });
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
  }

  async #deadLetter(delivery: Delivery, reason: DeadLetterReason): Promise<void> {
    const { metrics, logger } = this.#deps;
    if (this.draining) return;
    const queue = delivery.source.queue;
    const { content, options } = buildDeadLetter(delivery.message, queue, reason, new Date());
    if (
      !(await this.#publishHolding(
        delivery,
        delivery.source.deadLetterQueue,
        content,
        options,
        'dead_letter_publish',
      ))
    ) {
      return;
    }
    const replied = await this.#reply(delivery, {
      status: 'dead_lettered',
      kind: reason.kind,
      reason: reason.reason,
      message: reason.message,
      dead_letter_queue: delivery.source.deadLetterQueue,
    });
    if (!replied) return;
    const acked = delivery.ack();
    if (acked) metrics.deadLettered.inc({ queue, kind: reason.kind, reason: reason.reason });
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

  /**
   * Tells the publisher what became of its message when it asked (reply_to, usually with a
   * correlation_id): the job id, "duplicate", or the dead-letter reason. Sent and confirmed
   * before the original is acked, so an acked message always had its answer published.
   */
  async #reply(
    delivery: Delivery,
    body: Readonly<Record<string, unknown>>,
    jobId?: string,
  ): Promise<boolean> {
    const to = replyTo(delivery);
    if (to === undefined) return true;
    const { correlationId } = delivery.message.properties;
    // The job id goes in as the digits PostgREST sent: ids are BIGINT.
    const json = JSON.stringify(body);
    const content = Buffer.from(jobId === undefined ? json : `${json.slice(0, -1)},"job_id":${jobId}}`);
    const options: Options.Publish = {
      contentType: 'application/json',
      headers: { 'x-pgq-bridge-outcome': String(body.status) },
      ...(correlationId === undefined ? {} : { correlationId }),
    };
    const sent = await this.#publishHolding(delivery, to, content, options, 'reply_publish');
    if (sent) this.#deps.metrics.replies.inc({ queue: delivery.source.queue, status: String(body.status) });
    return sent;
  }

  /**
   * Publishes through the default exchange and waits for the broker's confirm, retrying while the
   * delivery is held. False when it had to let go (shutdown, channel lost, held too long): the
   * delivery is then not acked, and the broker redelivers it.
   */
  async #publishHolding(
    delivery: Delivery,
    routingKey: string,
    content: Buffer,
    options: Options.Publish,
    retryKind: 'dead_letter_publish' | 'reply_publish',
  ): Promise<boolean> {
    const { publisher, metrics, logger, retry } = this.#deps;
    let hold: Hold | undefined;
    try {
      for (let attempt = 0; ; attempt++) {
        try {
          await publisher.publish('', routingKey, content, options);
          return true;
        } catch (error) {
          metrics.retries.inc({ queue: delivery.source.queue, kind: retryKind });
          logger.warn(
            { ...deliveryFields(delivery), err: toError(error), routingKey },
            `${retryKind === 'reply_publish' ? 'publishing the reply' : 'publishing the dead letter'} failed; holding the message and retrying`,
          );
          if (this.draining) return false;
          hold ??= this.#hold(delivery);
          if (!(await sleep(retryDelay(attempt, retry, 0), hold.signal))) {
            this.#handBack(delivery, hold.signal);
            return false;
          }
        }
        if (!delivery.live) return false;
      }
    } finally {
      hold?.dispose();
    }
  }

  /** Aborts on shutdown, when the delivery's channel is lost, or when it has been held too long. */
  #hold(delivery: Delivery): Hold {
    const controller = new AbortController();
    const abort = (): void => controller.abort();
    const sources = [this.#drainSignal.signal, delivery.channelLost];
    for (const source of sources) source.addEventListener('abort', abort, { once: true });
    const remaining = Math.max(0, delivery.receivedAt + this.#deps.retry.maxHoldMs - Date.now());
    const timer = setTimeout(abort, remaining);
    if (sources.some((source) => source.aborted)) abort();
    return {
      signal: controller.signal,
      dispose: () => {
        clearTimeout(timer);
        for (const source of sources) source.removeEventListener('abort', abort);
      },
    };
  }

  /** Returns a held delivery to the queue before the broker's consumer_timeout could close the channel. */
  #handBack(delivery: Delivery, hold: AbortSignal): void {
    if (this.draining || !delivery.live || !hold.aborted) return;
    if (delivery.requeue()) {
      this.#deps.metrics.requeued.inc({ queue: delivery.source.queue });
      this.#deps.logger.warn(
        { ...deliveryFields(delivery), outcome: 'requeued', heldMs: Date.now() - delivery.receivedAt },
        'held too long without success; returned to the queue',
      );
    }
  }

  #logFailure(
    delivery: Delivery,
    args: EnqueueArgs,
    result: RpcResult,
    outcome: FailedOutcome,
    failures: number,
  ): void {
    const { logger } = this.#deps;
    // The first failure of a delivery is worth a warning; the rest of a long outage is noise
    // (the circuit logs the outage itself).
    const level = failures === 1 ? 'warn' : 'debug';
    if (!logger.isLevelEnabled(level)) return;
    logger[level](
      {
        ...deliveryFields(delivery),
        entrypoint: args.entrypoint,
        outcome: outcome.kind,
        failures,
        ...resultFields(result),
      },
      `enqueue failed (${outcome.kind}); holding and retrying`,
    );
  }
}

export function deliveryFields(delivery: Delivery): Record<string, unknown> {
  const { fields, properties } = delivery.message;
  return {
    queue: delivery.source.queue,
    deliveryTag: fields.deliveryTag,
    messageId: properties.messageId,
    redelivered: fields.redelivered,
    deliveryCount: properties.headers?.['x-delivery-count'],
  };
}

function resultFields(result: RpcResult): Record<string, unknown> {
  switch (result.kind) {
    case 'http_error':
      return { httpStatus: result.status, code: result.code, error: result.message };
    case 'network_error':
      return { errno: result.errno, error: result.message, requestSent: result.requestSent };
    case 'bad_response':
      return { httpStatus: result.status, error: result.message };
    case 'enqueued':
    case 'duplicate':
      return {};
  }
}

function describe(result: RpcResult): string {
  switch (result.kind) {
    case 'http_error':
      return `HTTP ${result.status}${result.code === null ? '' : ` ${result.code}`}: ${result.message}`;
    case 'network_error':
      return `${result.errno}: ${result.message}`;
    case 'bad_response':
      return `HTTP ${result.status}: ${result.message}`;
    case 'enqueued':
    case 'duplicate':
      return result.kind;
  }
}

function rpcReason(result: RpcResult, kind: 'rejected_by_rpc'): DeadLetterReason {
  if (result.kind === 'http_error') {
    return {
      kind,
      reason: result.code ?? `http_${result.status}`,
      message: result.message,
      httpStatus: result.status,
      postgrestCode: result.code,
      details: result.details,
      hint: result.hint,
    };
  }
  return { kind, reason: result.kind, message: describe(result) };
}

/** Where the publisher asked for the outcome to go, if anywhere. */
function replyTo(delivery: Delivery): string | undefined {
  const to: unknown = delivery.message.properties.replyTo;
  return typeof to === 'string' && to !== '' ? to : undefined;
}
