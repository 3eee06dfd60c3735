import type { ChannelModel, ConfirmChannel, ConsumeMessage, Options } from 'amqplib';
import type { Logger } from 'pino';
import { toError } from '../errors.ts';
import type { PublishResult } from '../pipeline/delivery.ts';
import { type ConnectFn, ConnectionKeeper, type ConnectionSettings } from './connection.ts';
import type { BrokerNode, NodeMove } from './nodes.ts';

/**
 * Publishes with publisher confirms on a connection of its own. RabbitMQ blocks a connection
 * that publishes during a memory or disk alarm, and a blocked connection also holds back acks, so
 * the consumer's connection never publishes.
 *
 * A publish counts only when the broker routed it to a queue and confirmed it:
 * - `mandatory`, so an unroutable message (its queue deleted) comes back as a basic.return
 *   instead of being confirmed and dropped. The return arrives before the confirm of the same
 *   publish; a per-publish id header ties the two together.
 * - a deadline on the confirm: a blocked broker never confirms, and the delivery waiting for it
 *   must still be settled or handed back in time.
 * - while the connection is blocked nothing is published: it would only sit in a socket buffer.
 */

export const PUBLISH_ID_HEADER = 'x-pgq-bridge-publish-id';

export interface PublisherEvents {
  readonly onBlocked?: (blocked: boolean, reason: string | undefined) => void;
  readonly onFailover?: (move: NodeMove) => void;
}

interface Pending {
  returned: boolean;
}

export class ConfirmPublisher {
  readonly #keeper: ConnectionKeeper;
  readonly #logger: Logger;
  readonly #confirmTimeoutMs: number;
  readonly #events: PublisherEvents;
  readonly #pending = new Map<string, Pending>();
  #channel: ConfirmChannel | undefined;
  #blocked = false;
  #nextId = 0;

  constructor(
    settings: ConnectionSettings & { readonly confirmTimeoutMs: number },
    logger: Logger,
    connect?: ConnectFn,
    events: PublisherEvents = {},
  ) {
    this.#logger = logger;
    this.#confirmTimeoutMs = settings.confirmTimeoutMs;
    this.#events = events;
    this.#keeper = new ConnectionKeeper(
      { ...settings, connectionName: `${settings.connectionName}-publisher` },
      {
        setup: (connection) => this.#setup(connection),
        onLost: () => {
          this.#channel = undefined;
          this.#setBlocked(false, undefined);
        },
        onFailover: (move) => events.onFailover?.(move),
      },
      logger,
      connect,
    );
  }

  start(): void {
    this.#keeper.start();
  }

  get ready(): boolean {
    return this.#channel !== undefined;
  }

  /** The broker node published to right now. */
  get node(): BrokerNode | undefined {
    return this.#keeper.node;
  }

  get blocked(): boolean {
    return this.#blocked;
  }

  /** The publisher's connection, for declaring the queues it publishes to. */
  get connection(): ChannelModel | undefined {
    return this.#keeper.current;
  }

  /** Publishes through the default exchange; resolves (never rejects) with what became of it. */
  publish(routingKey: string, content: Buffer, options: Options.Publish): Promise<PublishResult> {
    const channel = this.#channel;
    if (channel === undefined) return failed('unavailable', 'the publisher is not connected to the broker');
    if (this.#blocked) return failed('blocked', 'the broker blocks publishing (memory or disk alarm)');
    const id = String(++this.#nextId);
    const pending: Pending = { returned: false };
    this.#pending.set(id, pending);
    return new Promise<PublishResult>((resolve) => {
      const finish = (result: PublishResult): void => {
        clearTimeout(timer);
        this.#pending.delete(id);
        resolve(result);
      };
      const timer = setTimeout(
        () =>
          finish({ ok: false, kind: 'timeout', message: `no confirm within ${this.#confirmTimeoutMs} ms` }),
        this.#confirmTimeoutMs,
      );
      try {
        channel.publish(
          '',
          routingKey,
          content,
          { ...options, mandatory: true, headers: { ...options.headers, [PUBLISH_ID_HEADER]: id } },
          (error: unknown) => {
            if (error !== null && error !== undefined) {
              finish({ ok: false, kind: 'nacked', message: 'the broker did not confirm the message' });
            } else if (pending.returned) {
              finish({
                ok: false,
                kind: 'returned',
                message: `no queue named ${JSON.stringify(routingKey)}`,
              });
            } else {
              finish({ ok: true });
            }
          },
        );
      } catch (error) {
        // Thrown synchronously for a closing channel or a header table past the frame limit.
        const err = toError(error);
        finish({ ok: false, kind: err instanceof RangeError ? 'too_large' : 'error', message: err.message });
      }
    });
  }

  close(): Promise<void> {
    return this.#keeper.close();
  }

  async #setup(connection: ChannelModel): Promise<void> {
    const channel = await connection.createConfirmChannel();
    channel.on('error', (error: Error) =>
      this.#logger.error({ err: error }, 'publisher channel closed by the broker'),
    );
    channel.on('return', (message: ConsumeMessage) => {
      const id: unknown = message.properties.headers?.[PUBLISH_ID_HEADER];
      const pending = typeof id === 'string' ? this.#pending.get(id) : undefined;
      if (pending !== undefined) pending.returned = true;
    });
    channel.on('close', () => {
      if (this.#channel !== channel) return;
      this.#channel = undefined;
      // The connection may live on; a fresh connection brings a fresh channel.
      connection.close().catch(() => undefined);
    });
    connection.on('blocked', (reason: string) => this.#setBlocked(true, reason));
    connection.on('unblocked', () => this.#setBlocked(false, undefined));
    this.#channel = channel;
  }

  #setBlocked(blocked: boolean, reason: string | undefined): void {
    if (blocked === this.#blocked) return;
    this.#blocked = blocked;
    if (blocked) this.#logger.warn({ reason }, 'the broker blocked the publisher connection');
    else this.#logger.info('the broker unblocked the publisher connection');
    this.#events.onBlocked?.(blocked, reason);
  }
}

function failed(kind: 'unavailable' | 'blocked', message: string): Promise<PublishResult> {
  return Promise.resolve({ ok: false, kind, message });
}
