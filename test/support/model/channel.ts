import { EventEmitter } from 'node:events';
import type { Ledger } from './ledger.ts';

/**
 * amqplib's ChannelModel, Channel and ConfirmChannel, as far as the bridge uses them, over the
 * simulated broker. Broker calls answer after a small random latency, so intake changes can
 * overlap (a pause while a basic.consume is pending); acks, nacks and publishes are sync frames,
 * as in amqplib.
 */

export interface StoredMessage {
  readonly id: string;
  readonly content: Buffer;
  readonly properties: Record<string, unknown>;
  /** Times the broker delivered it so far. */
  deliveries: number;
}

export interface Outstanding {
  readonly message: DeliveredMessage;
  readonly stored: StoredMessage;
  readonly queue: string;
  readonly record: number;
}

export interface DeliveredMessage {
  readonly content: Buffer;
  readonly fields: {
    readonly deliveryTag: number;
    readonly redelivered: boolean;
    readonly exchange: string;
    readonly routingKey: string;
    readonly consumerTag: string;
  };
  readonly properties: Record<string, unknown>;
}

export interface Consumer {
  readonly tag: string;
  readonly queue: string;
  readonly channel: FakeChannel;
  readonly onMessage: (message: DeliveredMessage | null) => void;
}

/** What the channels need from the broker. */
export interface BrokerCore {
  readonly ledger: Ledger;
  latency(): number;
  hasQueue(name: string): boolean;
  declare(name: string): void;
  addConsumer(consumer: Consumer): void;
  removeConsumer(consumer: Consumer): void;
  /** Puts a message back at the head of its queue, counted as delivered once more. */
  requeue(outstanding: Outstanding, end: 'requeue' | 'lost' | 'released'): void;
  acked(outstanding: Outstanding): void;
  publish(channel: FakeChannel, routingKey: string, content: Buffer, options: Record<string, unknown>): void;
  wake(): void;
}

let nextChannelId = 1;

export class FakeConnection extends EventEmitter {
  readonly name: string;
  readonly channels = new Set<FakeChannel>();
  readonly #broker: BrokerCore;
  open = true;
  blocked = false;

  constructor(broker: BrokerCore, name: string) {
    super();
    this.#broker = broker;
    this.name = name;
  }

  createChannel(): Promise<FakeChannel> {
    return this.#open(false);
  }

  createConfirmChannel(): Promise<FakeChannel> {
    return this.#open(true);
  }

  #open(confirm: boolean): Promise<FakeChannel> {
    return new Promise((resolve, reject) => {
      setTimeout(() => {
        if (!this.open) return reject(new Error('Connection closed'));
        const channel = new FakeChannel(this.#broker, this, confirm);
        this.channels.add(channel);
        resolve(channel);
      }, this.#broker.latency());
    });
  }

  /** The bridge closes it. */
  async close(): Promise<void> {
    if (!this.open) throw new Error('Connection closed');
    await new Promise((resolve) => setTimeout(resolve, this.#broker.latency()));
    this.drop(undefined, 'released');
  }

  /** The connection ends (`error` set: the broker or the network ended it). */
  drop(error: Error | undefined, end: 'lost' | 'released'): void {
    if (!this.open) return;
    this.open = false;
    for (const channel of [...this.channels]) channel.end(error, end);
    if (error !== undefined) this.emit('error', error);
    this.emit('close', error);
  }
}

export class FakeChannel extends EventEmitter {
  readonly id = nextChannelId++;
  readonly connection: FakeConnection;
  readonly confirm: boolean;
  readonly outstanding = new Map<number, Outstanding>();
  readonly consumers = new Map<string, Consumer>();
  readonly #broker: BrokerCore;
  prefetchCount = 0;
  open = true;
  /** Broker calls sent and not answered yet. */
  pending = 0;
  #nextTag = 0;
  #nextConsumer = 0;

  constructor(broker: BrokerCore, connection: FakeConnection, confirm: boolean) {
    super();
    this.#broker = broker;
    this.connection = connection;
    this.confirm = confirm;
  }

  nextTag(): number {
    return ++this.#nextTag;
  }

  #call<T>(work: () => T): Promise<T> {
    if (!this.open) return Promise.reject(new Error('Channel closed'));
    this.pending++;
    return new Promise<T>((resolve, reject) => {
      setTimeout(() => {
        this.pending--;
        if (!this.open) return reject(new Error('Channel closed'));
        try {
          resolve(work());
        } catch (error) {
          reject(error);
        }
      }, this.#broker.latency());
    });
  }

  prefetch(count: number): Promise<void> {
    return this.#call(() => {
      this.prefetchCount = count;
    });
  }

  assertQueue(name: string): Promise<{ queue: string }> {
    return this.#call(() => {
      this.#broker.declare(name);
      return { queue: name };
    });
  }

  checkQueue(name: string): Promise<{ queue: string }> {
    return this.#call(() => {
      if (this.#broker.hasQueue(name)) return { queue: name };
      const error = Object.assign(new Error(`NOT_FOUND - no queue '${name}'`), { code: 404 });
      setTimeout(() => this.end(error, 'lost'), 0);
      throw error;
    });
  }

  consume(queue: string, onMessage: Consumer['onMessage']): Promise<{ consumerTag: string }> {
    return this.#call(() => {
      const consumer: Consumer = {
        tag: `ctag-${this.id}-${++this.#nextConsumer}`,
        queue,
        channel: this,
        onMessage,
      };
      this.consumers.set(consumer.tag, consumer);
      this.#broker.addConsumer(consumer);
      return { consumerTag: consumer.tag };
    });
  }

  cancel(tag: string): Promise<void> {
    return this.#call(() => {
      const consumer = this.consumers.get(tag);
      if (consumer === undefined) return;
      this.consumers.delete(tag);
      this.#broker.removeConsumer(consumer);
    });
  }

  ack(message: DeliveredMessage, multiple = false): void {
    this.#settle(message, multiple, (outstanding) => this.#broker.acked(outstanding));
  }

  nack(message: DeliveredMessage, multiple = false, requeue = true): void {
    if (!requeue) this.#broker.ledger.violate(0, 'I2: a delivery was nacked without requeue (dropped)');
    this.#settle(message, multiple, (outstanding) => this.#broker.requeue(outstanding, 'requeue'));
  }

  #settle(message: DeliveredMessage, multiple: boolean, settle: (o: Outstanding) => void): void {
    if (!this.open) throw new Error('Channel closed');
    const tag = message.fields.deliveryTag;
    const own = this.outstanding.get(tag);
    if (own?.message !== message) {
      // RabbitMQ closes the channel: PRECONDITION_FAILED - unknown delivery tag.
      this.#broker.ledger.violate(
        Date.now(),
        `I2: settled tag ${tag} on channel ${this.id}, where it is not outstanding (settled twice, or another channel's)`,
      );
      const error = Object.assign(new Error('PRECONDITION_FAILED - unknown delivery tag'), { code: 406 });
      setTimeout(() => this.end(error, 'lost'), 0);
      return;
    }
    const tags = multiple ? [...this.outstanding.keys()].filter((t) => t <= tag) : [tag];
    for (const t of tags) {
      const outstanding = this.outstanding.get(t);
      if (outstanding === undefined) continue;
      this.outstanding.delete(t);
      settle(outstanding);
    }
    this.#broker.wake();
  }

  publish(
    _exchange: string,
    routingKey: string,
    content: Buffer,
    options: Record<string, unknown>,
    confirm?: (error: unknown) => void,
  ): boolean {
    if (!this.open) throw new Error('Channel closed');
    this.#broker.publish(this, routingKey, content, { ...options, confirm });
    return true;
  }

  async close(): Promise<void> {
    if (!this.open) throw new Error('Channel closed');
    await new Promise((resolve) => setTimeout(resolve, this.#broker.latency()));
    this.end(undefined, 'released');
  }

  /** The channel is gone: the broker requeues what it had delivered on it. */
  end(error: Error | undefined, end: 'lost' | 'released'): void {
    if (!this.open) return;
    this.open = false;
    this.connection.channels.delete(this);
    for (const consumer of this.consumers.values()) this.#broker.removeConsumer(consumer);
    this.consumers.clear();
    for (const outstanding of this.outstanding.values()) this.#broker.requeue(outstanding, end);
    this.outstanding.clear();
    if (error !== undefined) this.emit('error', error);
    this.emit('close');
    this.#broker.wake();
  }
}
