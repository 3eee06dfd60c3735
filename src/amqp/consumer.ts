import type { Channel, ChannelModel } from 'amqplib';
import type { Logger } from 'pino';
import type { SourceConfig } from '../config/config.ts';
import { toError } from '../errors.ts';
import { backoffDelay } from '../resilience/backoff.ts';
import { within } from '../resilience/deadline.ts';
import { sleep } from '../resilience/sleep.ts';
import type { AckHold } from './acks.ts';
import { type ConnectFn, ConnectionKeeper, type ConnectionSettings } from './connection.ts';
import { AmqpDelivery, endLease, type Lease } from './delivery.ts';
import type { BrokerFault } from './faults.ts';
import type { BrokerNode, NodeMove } from './nodes.ts';
import { closeLease, openFault, openSourceChannel, type SourceState, sourceState } from './source-channel.ts';

/**
 * Consumes the source queues: one channel per source (so a channel error on one queue does not
 * stop the others), prefetch set before consume, manual acks.
 *
 * Lifecycle of a source:
 *   OPENING   channel created, prefetch set, source and dead-letter queues declared
 *             (source-channel.ts)
 *   CONSUMING basic.consume active; deliveries flow to the handler
 *   PAUSED    consumer cancelled (the endpoint is failing, or too many bytes are held);
 *             unacked deliveries stay on the channel and can still be acked
 *   LOST      channel or connection closed: every delivery it carried is dead to us (the broker
 *             requeues them) and is never acked on another channel; reopened with backoff
 *   STOPPED   after stopIntake(): no new consumer is started again
 *
 * A server-side consumer cancel (queue deleted, or a quorum consumer timeout on RabbitMQ 4.3+)
 * closes the channel and takes the LOST path, so the queue is declared (or checked) again.
 *
 * Consuming and cancelling are serialised per source: each change waits for the one before it,
 * then moves the source towards what is wanted now. So a pause that arrives while a resume's
 * basic.consume is pending cancels the consumer it made, and there is never a second consumer.
 */

export type PauseReason = 'circuit' | 'memory';

export interface ConsumerOptions {
  /** How a source's acks wait to share frames (see acks.ts); by default they don't. */
  readonly ackHold?: (source: SourceConfig) => AckHold | undefined;
  readonly connect?: ConnectFn | undefined;
}

export interface ConsumerEvents {
  readonly onDelivery: (delivery: AmqpDelivery) => void;
  readonly onReconnected?: () => void;
  readonly onFailover?: (move: NodeMove) => void;
  readonly onConsumerCancelled?: (queue: string) => void;
  readonly onStateChange?: () => void;
  /** What keeps the connection (scope 'connection') or a source (its queue) down; undefined when fine. */
  readonly onFault?: (scope: string, fault: BrokerFault | undefined) => void;
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
  readonly #pausedFor = new Set<PauseReason>();
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
    this.#sources = sources.map(sourceState);
    this.#keeper = new ConnectionKeeper(
      settings,
      {
        setup: (connection) => this.#setup(connection),
        onLost: () => this.#onConnectionLost(),
        onReconnected: () => events.onReconnected?.(),
        onFailover: (move) => events.onFailover?.(move),
        onFault: (fault) => events.onFault?.('connection', fault),
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

  /** The broker node consumed from right now. */
  get node(): BrokerNode | undefined {
    return this.#keeper.node;
  }

  /** Every source has an open channel with an active consumer. */
  get consuming(): boolean {
    return this.#sources.every((s) => s.lease?.open === true && s.consumerTag !== undefined);
  }

  get paused(): boolean {
    return this.#pausedFor.size > 0;
  }

  /** Why intake is paused, if it is. */
  get pausedFor(): readonly PauseReason[] {
    return [...this.#pausedFor];
  }

  /**
   * Stops (or restarts) new deliveries for one reason; intake runs only when no reason holds
   * it. Held deliveries can still be acked meanwhile.
   */
  async setPaused(reason: PauseReason, paused: boolean): Promise<void> {
    if (paused === this.#pausedFor.has(reason)) return;
    if (paused) this.#pausedFor.add(reason);
    else this.#pausedFor.delete(reason);
    await this.#changeIntake();
  }

  /** First step of shutdown: no new deliveries, ever. */
  async stopIntake(): Promise<void> {
    this.#stopped = true;
    this.#stopReopening.abort();
    await this.#changeIntake();
  }

  async #changeIntake(): Promise<void> {
    await Promise.all(this.#sources.map((s) => this.#converge(s)));
    this.#events.onStateChange?.();
  }

  get #wanted(): boolean {
    return this.#pausedFor.size === 0 && !this.#stopped;
  }

  /**
   * Closes channels and the connection within `timeoutMs`; unacked deliveries go back to their
   * queues. Past the deadline the socket is destroyed, which returns them just the same.
   */
  async close(timeoutMs: number): Promise<void> {
    const started = Date.now();
    const left = (): number => timeoutMs - (Date.now() - started);
    await within(this.stopIntake(), left());
    const closing = this.#sources.map((source) => {
      const { lease, channel } = source;
      source.lease = undefined;
      source.channel = undefined;
      return lease?.open && channel !== undefined ? closeLease(lease, channel) : Promise.resolve();
    });
    await within(Promise.all(closing), left());
    await this.#keeper.close(left());
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
      const fault = openFault(error);
      // One line per change of what is wrong, not a stack trace per attempt.
      const fields = { queue: source.config.queue, key: fault.key, reason: fault.message };
      if (source.fault?.message === fault.message)
        this.#logger.debug(fields, 'the source still cannot be opened');
      else this.#logger.error(fields, 'cannot open the source; retrying with backoff');
      source.fault = fault;
      this.#events.onFault?.(source.config.queue, fault);
    }
  }

  async #openSource(connection: ChannelModel, source: SourceState): Promise<void> {
    const { config } = source;
    await openSourceChannel(connection, source, this.#ackHold?.(config), this.#logger, (lease) =>
      this.#onChannelClosed(source, lease),
    );
    source.reopenAttempt = 0;
    if (source.fault !== undefined) {
      this.#logger.info({ queue: config.queue }, 'the source opens again');
      source.fault = undefined;
      this.#events.onFault?.(config.queue, undefined);
    }
    await this.#converge(source);
    this.#events.onStateChange?.();
  }

  /** Queues an intake change for the source behind the ones already under way. */
  #converge(source: SourceState): Promise<void> {
    source.changing = source.changing.then(() => this.#moveIntake(source));
    return source.changing;
  }

  /** Consumes or cancels until the source is as wanted, one broker call at a time. */
  async #moveIntake(source: SourceState): Promise<void> {
    for (;;) {
      const { lease, channel } = source;
      if (lease === undefined || !lease.open || channel === undefined) return;
      if (this.#wanted && source.consumerTag === undefined) {
        if (!(await this.#consume(source, lease, channel))) return;
      } else if (!this.#wanted && source.consumerTag !== undefined) {
        await this.#cancel(source, channel, source.consumerTag);
      } else {
        return;
      }
    }
  }

  async #consume(source: SourceState, lease: Lease, channel: Channel): Promise<boolean> {
    const { config } = source;
    try {
      const { consumerTag } = await channel.consume(
        config.queue,
        (message) => {
          if (message === null) {
            this.#onServerCancel(source, lease);
            return;
          }
          try {
            this.#events.onDelivery(new AmqpDelivery(config, message, lease, Date.now()));
          } catch (error) {
            this.#logger.error({ err: toError(error), queue: config.queue }, 'delivery handler threw');
          }
        },
        { noAck: false },
      );
      if (!lease.open) return false;
      source.consumerTag = consumerTag;
      this.#logger.info({ queue: config.queue, prefetch: config.prefetch }, 'consuming');
      return true;
    } catch (error) {
      this.#logger.error({ err: toError(error), queue: config.queue }, 'cannot start consuming');
      return false;
    }
  }

  async #cancel(source: SourceState, channel: Channel, tag: string): Promise<void> {
    try {
      await channel.cancel(tag);
    } catch (error) {
      this.#logger.debug(
        { err: toError(error), queue: source.config.queue },
        'cancel failed (channel closing)',
      );
    }
    if (source.consumerTag === tag) source.consumerTag = undefined;
  }

  #onServerCancel(source: SourceState, lease: Lease): void {
    this.#logger.warn(
      { queue: source.config.queue },
      'the broker cancelled the consumer (queue deleted or consumer timeout); reopening',
    );
    this.#events.onConsumerCancelled?.(source.config.queue);
    source.consumerTag = undefined;
    const channel = source.lease === lease ? source.channel : undefined;
    if (channel !== undefined) void closeLease(lease, channel);
    else endLease(lease);
  }

  #onChannelClosed(source: SourceState, lease: Lease): void {
    endLease(lease);
    if (source.lease !== lease) return;
    source.lease = undefined;
    source.channel = undefined;
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
      source.channel = undefined;
      source.consumerTag = undefined;
    }
    this.#events.onStateChange?.();
  }
}
