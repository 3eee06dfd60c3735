import { setMaxListeners } from 'node:events';
import type { Channel, ChannelModel, ConsumeMessage } from 'amqplib';
import type { Logger } from 'pino';
import type { SourceConfig } from '../config/config.ts';
import { toError } from '../errors.ts';
import { backoffDelay } from '../postgrest/classify.ts';
import { sleep } from '../resilience/sleep.ts';
import { type AckHold, ChannelAcks } from './acks.ts';
import { type ConnectFn, ConnectionKeeper, type ConnectionSettings } from './connection.ts';

/**
 * Consumes the source queues: one channel per source (so a channel error on one queue does not
 * stop the others), prefetch set before consume, manual acks.
 *
 * Lifecycle of a source:
 *   OPENING   channel created, prefetch set, source and dead-letter queues declared
 *   CONSUMING basic.consume active; deliveries flow to the handler
 *   PAUSED    consumer cancelled (the endpoint is failing); unacked deliveries stay on the
 *             channel and can still be acked
 *   LOST      channel or connection closed: every delivery it carried is dead to us (the broker
 *             requeues them) and is never acked on another channel; reopened with backoff
 *   STOPPED   after stopIntake(): no new consumer is started again
 *
 * A server-side consumer cancel (queue deleted, or a quorum consumer timeout on RabbitMQ 4.3+)
 * closes the channel and takes the LOST path, so the queue is declared (or checked) again.
 */

/** A channel as deliveries see it; `open` turns false for good once the channel is gone. */
interface Lease {
  readonly channel: Channel;
  readonly acks: ChannelAcks<ConsumeMessage>;
  open: boolean;
  readonly lost: AbortController;
}

function openLease(channel: Channel, ackHold: AckHold | undefined): Lease {
  // amqplib throws synchronously when the channel is closing; the broker then requeues the
  // message, so there is nothing left to do.
  const acks = new ChannelAcks<ConsumeMessage>(
    {
      ack: (message, multiple) => {
        try {
          channel.ack(message, multiple);
        } catch {}
      },
      requeue: (message) => {
        try {
          channel.nack(message, false, true);
        } catch {}
      },
    },
    ackHold,
  );
  const lost = new AbortController();
  // Every held delivery of the channel listens for its loss: more than Node's default of 10 is normal.
  setMaxListeners(0, lost.signal);
  return { channel, acks, open: true, lost };
}

function endLease(lease: Lease | undefined): void {
  if (lease === undefined || !lease.open) return;
  lease.open = false;
  lease.acks.close();
  lease.lost.abort();
}

/** Closes the channel after sending the acks it still owes. */
async function closeLease(lease: Lease): Promise<void> {
  lease.acks.flush();
  endLease(lease);
  await lease.channel.close().catch(() => undefined);
}

export class Delivery {
  readonly source: SourceConfig;
  readonly message: ConsumeMessage;
  readonly receivedAt: number;
  readonly #lease: Lease;
  #settled = false;

  constructor(source: SourceConfig, message: ConsumeMessage, lease: Lease, receivedAt: number) {
    this.source = source;
    this.message = message;
    this.#lease = lease;
    this.receivedAt = receivedAt;
    lease.acks.delivered(message);
  }

  /** Aborts when the channel that delivered this message is gone. */
  get channelLost(): AbortSignal {
    return this.#lease.lost.signal;
  }

  /** False once the delivery is settled or its channel is gone (then the broker owns it again). */
  get live(): boolean {
    return !this.#settled && this.#lease.open;
  }

  /** The ack goes out at the end of this event-loop turn, coalesced with the channel's others. */
  ack(): boolean {
    if (!this.#claim()) return false;
    this.#lease.acks.ack(this.message);
    return true;
  }

  /** Returns the message to the queue. */
  requeue(): boolean {
    if (!this.#claim()) return false;
    this.#lease.acks.requeue(this.message);
    return true;
  }

  // Settles at most once, and only on the channel that delivered it: a delivery tag means
  // nothing on another channel, and acking it there could ack a different message.
  #claim(): boolean {
    if (!this.live) return false;
    this.#settled = true;
    return true;
  }
}

export interface ConsumerOptions {
  /** How a source's acks wait to share frames (see acks.ts); by default they don't. */
  readonly ackHold?: (source: SourceConfig) => AckHold | undefined;
  readonly connect?: ConnectFn | undefined;
}

export interface ConsumerEvents {
  readonly onDelivery: (delivery: Delivery) => void;
  readonly onReconnected?: () => void;
  readonly onConsumerCancelled?: (queue: string) => void;
  readonly onStateChange?: () => void;
}

interface SourceState {
  readonly config: SourceConfig;
  lease: Lease | undefined;
  consumerTag: string | undefined;
  reopenAttempt: number;
}

export class AmqpConsumer {
  readonly #sources: SourceState[];
  readonly #keeper: ConnectionKeeper;
  readonly #events: ConsumerEvents;
  readonly #logger: Logger;
  readonly #settings: ConnectionSettings;
  readonly #ackHold: ConsumerOptions['ackHold'];
  readonly #stopReopening = new AbortController();
  #connection: ChannelModel | undefined;
  #paused = false;
  #stopped = false;

  constructor(
    settings: ConnectionSettings,
    sources: readonly SourceConfig[],
    events: ConsumerEvents,
    logger: Logger,
    options: ConsumerOptions = {},
  ) {
    this.#settings = settings;
    this.#ackHold = options.ackHold;
    this.#events = events;
    this.#logger = logger;
    this.#sources = sources.map((config) => ({
      config,
      lease: undefined,
      consumerTag: undefined,
      reopenAttempt: 0,
    }));
    this.#keeper = new ConnectionKeeper(
      settings,
      {
        setup: (connection) => this.#setup(connection),
        onLost: () => this.#onConnectionLost(),
        onReconnected: () => events.onReconnected?.(),
      },
      logger,
      options.connect,
    );
  }

  start(): void {
    this.#keeper.start();
  }

  waitUntilConnected(): Promise<void> {
    return this.#keeper.waitUntilConnected();
  }

  /** Every source has an open channel with an active consumer. */
  get consuming(): boolean {
    return this.#sources.every((s) => s.lease?.open === true && s.consumerTag !== undefined);
  }

  get paused(): boolean {
    return this.#paused;
  }

  /** Stops new deliveries; held deliveries can still be acked. Used while the endpoint fails. */
  async pause(): Promise<void> {
    if (this.#paused) return;
    this.#paused = true;
    await Promise.all(this.#sources.map((s) => this.#cancel(s)));
    this.#events.onStateChange?.();
  }

  async resume(): Promise<void> {
    if (!this.#paused || this.#stopped) return;
    this.#paused = false;
    await Promise.all(this.#sources.map((s) => this.#consume(s)));
    this.#events.onStateChange?.();
  }

  /** First step of shutdown: no new deliveries, ever. */
  async stopIntake(): Promise<void> {
    this.#stopped = true;
    this.#stopReopening.abort();
    await Promise.all(this.#sources.map((s) => this.#cancel(s)));
    this.#events.onStateChange?.();
  }

  /** Closes channels and the connection; unacked deliveries go back to their queues. */
  async close(): Promise<void> {
    await this.stopIntake();
    for (const source of this.#sources) {
      const lease = source.lease;
      source.lease = undefined;
      if (lease?.open) await closeLease(lease);
    }
    await this.#keeper.close();
  }

  async #setup(connection: ChannelModel): Promise<void> {
    this.#connection = connection;
    for (const source of this.#sources) await this.#tryOpenSource(connection, source);
  }

  // A source that cannot be opened (say, its queue exists with other arguments) must not keep
  // the other sources down: its channel closes, and the close schedules another attempt.
  async #tryOpenSource(connection: ChannelModel, source: SourceState): Promise<void> {
    try {
      await this.#openSource(connection, source);
    } catch (error) {
      this.#logger.error(
        { err: toError(error), queue: source.config.queue },
        'cannot open the source; will retry',
      );
    }
  }

  async #openSource(connection: ChannelModel, source: SourceState): Promise<void> {
    const { config } = source;
    const channel = await connection.createChannel();
    const lease = openLease(channel, this.#ackHold?.(config));
    // A channel error (precondition failed, queue deleted, consumer timeout) must not crash the process.
    channel.on('error', (error: Error) =>
      this.#logger.error({ err: error, queue: config.queue }, 'channel closed by the broker'),
    );
    channel.on('close', () => this.#onChannelClosed(source, lease));
    source.lease = lease;
    await channel.prefetch(config.prefetch, false);
    if (config.declare) {
      await channel.assertQueue(config.queue, { durable: true, arguments: config.queueArguments });
    } else {
      await channel.checkQueue(config.queue);
    }
    await channel.assertQueue(config.deadLetterQueue, { durable: true });
    source.reopenAttempt = 0;
    if (!this.#paused && !this.#stopped) await this.#consume(source);
    this.#events.onStateChange?.();
  }

  async #consume(source: SourceState): Promise<void> {
    const lease = source.lease;
    if (lease === undefined || !lease.open || source.consumerTag !== undefined) return;
    const { config } = source;
    try {
      const { consumerTag } = await lease.channel.consume(
        config.queue,
        (message) => {
          if (message === null) {
            this.#onServerCancel(source, lease);
            return;
          }
          try {
            this.#events.onDelivery(new Delivery(config, message, lease, Date.now()));
          } catch (error) {
            this.#logger.error({ err: toError(error), queue: config.queue }, 'delivery handler threw');
          }
        },
        { noAck: false },
      );
      source.consumerTag = consumerTag;
      this.#logger.info({ queue: config.queue, prefetch: config.prefetch }, 'consuming');
    } catch (error) {
      this.#logger.error({ err: toError(error), queue: config.queue }, 'cannot start consuming');
    }
  }

  async #cancel(source: SourceState): Promise<void> {
    const tag = source.consumerTag;
    const lease = source.lease;
    source.consumerTag = undefined;
    if (tag === undefined || lease === undefined || !lease.open) return;
    try {
      await lease.channel.cancel(tag);
    } catch (error) {
      this.#logger.debug(
        { err: toError(error), queue: source.config.queue },
        'cancel failed (channel closing)',
      );
    }
  }

  #onServerCancel(source: SourceState, lease: Lease): void {
    this.#logger.warn(
      { queue: source.config.queue },
      'the broker cancelled the consumer (queue deleted or consumer timeout); reopening',
    );
    this.#events.onConsumerCancelled?.(source.config.queue);
    source.consumerTag = undefined;
    void closeLease(lease);
  }

  #onChannelClosed(source: SourceState, lease: Lease): void {
    endLease(lease);
    if (source.lease !== lease) return;
    source.lease = undefined;
    source.consumerTag = undefined;
    this.#events.onStateChange?.();
    const connection = this.#connection;
    // A lost connection is handled by the keeper, which reopens every source after reconnecting.
    if (connection === undefined || this.#stopped) return;
    void this.#reopen(connection, source);
  }

  async #reopen(connection: ChannelModel, source: SourceState): Promise<void> {
    const delay = backoffDelay(source.reopenAttempt++, {
      initialDelayMs: this.#settings.reconnectInitialDelayMs,
      maxDelayMs: this.#settings.reconnectMaxDelayMs,
    });
    if (!(await sleep(delay, this.#stopReopening.signal))) return;
    if (this.#connection !== connection || source.lease !== undefined) return;
    await this.#tryOpenSource(connection, source);
  }

  #onConnectionLost(): void {
    this.#connection = undefined;
    for (const source of this.#sources) {
      endLease(source.lease);
      source.lease = undefined;
      source.consumerTag = undefined;
    }
    this.#events.onStateChange?.();
  }
}
