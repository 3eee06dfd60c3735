import type { ChannelModel } from 'amqplib';
import {
  type BrokerCore,
  type Consumer,
  type FakeChannel,
  FakeConnection,
  type Outstanding,
  type StoredMessage,
} from './channel.ts';
import type { Ledger } from './ledger.ts';

/**
 * A RabbitMQ as the model sees it: queues, consumers with prefetch, redeliveries (a quorum queue
 * counts them in `x-delivery-count`, a classic one only sets `redelivered`), mandatory publishes
 * that come back when no queue takes them, and confirms that can be nacked, lost, or held back
 * while the publishing connection is blocked. The faults are switched by the scenario.
 */

export const PUBLISH_ID = 'x-pgq-bridge-publish-id';
export const MODEL_ID = 'x-model-id';

interface HeldPublish {
  readonly channel: FakeChannel;
  readonly routingKey: string;
  readonly content: Buffer;
  readonly options: Record<string, unknown>;
}

export class Broker implements BrokerCore {
  readonly ledger: Ledger;
  readonly #queues = new Map<string, StoredMessage[]>();
  readonly #consumers = new Map<string, Consumer[]>();
  readonly #quorum: ReadonlySet<string>;
  readonly #dlqs: ReadonlySet<string>;
  readonly connections = new Set<FakeConnection>();
  #held: HeldPublish[] = [];
  #woken = false;
  /** Faults the scenario switches. */
  down = false;
  blocked = false;
  confirmFault: 'none' | 'nack' | 'lose' = 'none';

  constructor(ledger: Ledger, sources: ReadonlyArray<{ queue: string; quorum: boolean; dlq: string }>) {
    this.ledger = ledger;
    this.#quorum = new Set(sources.filter((s) => s.quorum).map((s) => s.queue));
    this.#dlqs = new Set(sources.map((s) => s.dlq));
    for (const source of sources) this.declare(source.queue);
    this.declare('replies');
  }

  /** Mostly a few ms; now and then a slow answer, so intake changes overlap. */
  latency(): number {
    const draw = Math.random();
    if (draw < 0.9) return Math.floor(draw * 4);
    return draw < 0.97 ? Math.floor(draw * 40) : Math.floor(draw * 250);
  }

  hasQueue(name: string): boolean {
    return this.#queues.has(name);
  }

  declare(name: string): void {
    if (!this.#queues.has(name)) this.#queues.set(name, []);
  }

  /** An operator deletes a queue (its messages go with it). */
  deleteQueue(name: string): void {
    this.#queues.delete(name);
    for (const consumer of this.#consumers.get(name) ?? []) {
      consumer.channel.consumers.delete(consumer.tag);
      consumer.onMessage(null);
    }
    this.#consumers.delete(name);
  }

  ready(queue: string): number {
    return this.#queues.get(queue)?.length ?? 0;
  }

  /** Consumers on the queue right now. */
  consumersOf(queue: string): readonly Consumer[] {
    return this.#consumers.get(queue) ?? [];
  }

  publishToSource(queue: string, message: StoredMessage): void {
    this.#queues.get(queue)?.push(message);
    this.wake();
  }

  connect = async (_url: string, options: Record<string, unknown>): Promise<ChannelModel> => {
    await new Promise((resolve) => setTimeout(resolve, this.latency()));
    if (this.down) throw Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
    const props = options.clientProperties as { connection_name?: string } | undefined;
    const connection = new FakeConnection(this, props?.connection_name ?? 'unnamed');
    this.connections.add(connection);
    connection.on('close', () => this.connections.delete(connection));
    if (this.blocked && isPublisher(connection)) this.#block(connection, true);
    return connection as unknown as ChannelModel;
  };

  setBlocked(blocked: boolean): void {
    this.blocked = blocked;
    for (const connection of this.connections) if (isPublisher(connection)) this.#block(connection, blocked);
    if (!blocked) {
      const held = this.#held;
      this.#held = [];
      for (const publish of held) this.#route(publish);
    }
  }

  #block(connection: FakeConnection, blocked: boolean): void {
    if (connection.blocked === blocked) return;
    connection.blocked = blocked;
    connection.emit(blocked ? 'blocked' : 'unblocked', 'low on memory');
  }

  addConsumer(consumer: Consumer): void {
    const list = this.#consumers.get(consumer.queue) ?? [];
    list.push(consumer);
    this.#consumers.set(consumer.queue, list);
    if (list.length > 1) this.ledger.violate(Date.now(), `I4: ${list.length} consumers on ${consumer.queue}`);
    this.wake();
  }

  removeConsumer(consumer: Consumer): void {
    const list = this.#consumers.get(consumer.queue) ?? [];
    this.#consumers.set(
      consumer.queue,
      list.filter((c) => c !== consumer),
    );
  }

  requeue(outstanding: Outstanding, end: 'requeue' | 'lost' | 'released'): void {
    this.#end(outstanding, end);
    this.#queues.get(outstanding.queue)?.unshift(outstanding.stored);
    this.wake();
  }

  acked(outstanding: Outstanding): void {
    this.#end(outstanding, 'ack');
  }

  #end(outstanding: Outstanding, end: 'ack' | 'requeue' | 'lost' | 'released'): void {
    const record = this.ledger.deliveries[outstanding.record];
    if (record === undefined) return;
    record.end = end;
    record.endedAt = Date.now();
    this.ledger.note(Date.now(), `${end} ${record.msgId} ch${record.channel}#${record.tag}`);
  }

  publish(channel: FakeChannel, routingKey: string, content: Buffer, options: Record<string, unknown>): void {
    const publish = { channel, routingKey, content, options };
    if (channel.connection.blocked) this.#held.push(publish);
    else setTimeout(() => this.#route(publish), this.latency());
  }

  #route({ channel, routingKey, content, options }: HeldPublish): void {
    if (!channel.open) return;
    const confirm = options.confirm as ((error: unknown) => void) | undefined;
    const headers = (options.headers ?? {}) as Record<string, unknown>;
    const queue = this.#queues.get(routingKey);
    if (queue === undefined) {
      if (options.mandatory === true) {
        channel.emit('return', { content, fields: { routingKey }, properties: { headers } });
      }
    } else {
      queue.push({ id: String(headers[MODEL_ID] ?? ''), content, properties: { headers }, deliveries: 0 });
    }
    const record =
      queue !== undefined && this.#dlqs.has(routingKey) ? this.#deadLetter(routingKey, headers) : undefined;
    if (this.confirmFault === 'lose') return;
    if (this.confirmFault === 'nack') {
      confirm?.(new Error('nacked'));
      return;
    }
    if (record !== undefined) record.confirmedAt = Date.now();
    confirm?.(null);
  }

  #deadLetter(queue: string, headers: Record<string, unknown>) {
    const status = headers['x-pgq-bridge-http-status'];
    const code = headers['x-pgq-bridge-postgrest-code'];
    const record = {
      msgId: String(headers[MODEL_ID] ?? '?'),
      queue,
      kind: String(headers['x-pgq-bridge-error-kind']),
      httpStatus: typeof status === 'number' ? status : undefined,
      code: typeof code === 'string' ? code : undefined,
      routedAt: Date.now(),
    };
    this.ledger.deadLetters.push(record);
    this.ledger.note(Date.now(), `dead letter ${record.msgId} ${record.kind} ${status ?? ''} ${code ?? ''}`);
    return record as typeof record & { confirmedAt?: number };
  }

  /** Delivers what consumers may take, once per event-loop turn. */
  wake(): void {
    if (this.#woken) return;
    this.#woken = true;
    setImmediate(() => {
      this.#woken = false;
      this.#pump();
    });
  }

  #pump(): void {
    for (const [queue, consumers] of this.#consumers) {
      const ready = this.#queues.get(queue);
      if (ready === undefined) continue;
      for (const consumer of consumers) {
        const channel = consumer.channel;
        while (ready.length > 0 && channel.open && consumer.channel.consumers.has(consumer.tag)) {
          if (channel.prefetchCount > 0 && channel.outstanding.size >= channel.prefetchCount) break;
          const stored = ready.shift() as StoredMessage;
          this.#deliver(queue, consumer, stored);
        }
      }
    }
  }

  #deliver(queue: string, consumer: Consumer, stored: StoredMessage): void {
    const channel = consumer.channel;
    const prior = stored.deliveries++;
    const tag = channel.nextTag();
    const headers = { ...(stored.properties.headers as Record<string, unknown>) };
    if (this.#quorum.has(queue) && prior > 0) headers['x-delivery-count'] = prior;
    const message = {
      content: stored.content,
      fields: {
        deliveryTag: tag,
        redelivered: prior > 0,
        exchange: '',
        routingKey: queue,
        consumerTag: consumer.tag,
      },
      properties: { ...stored.properties, headers },
    };
    const record =
      this.ledger.deliveries.push({ msgId: stored.id, channel: channel.id, tag, at: Date.now() }) - 1;
    channel.outstanding.set(tag, { message, stored, queue, record });
    this.ledger.note(Date.now(), `deliver ${stored.id} ch${channel.id}#${tag} prior=${prior}`);
    consumer.onMessage(message);
  }

  /** The broker ends a connection (a network fault, a node restart). */
  killConnections(which: 'consumer' | 'publisher'): void {
    for (const connection of [...this.connections]) {
      if (isPublisher(connection) === (which === 'publisher')) {
        connection.drop(new Error('CONNECTION_FORCED - broker forced connection closure'), 'lost');
      }
    }
  }

  /** The broker closes one channel of the consumer connection (a channel error). */
  killChannel(pick: number): void {
    const channels = [...this.connections].filter((c) => !isPublisher(c)).flatMap((c) => [...c.channels]);
    const channel = channels[pick % Math.max(1, channels.length)];
    channel?.end(
      Object.assign(new Error('PRECONDITION_FAILED - simulated channel error'), { code: 406 }),
      'lost',
    );
  }
}

function isPublisher(connection: FakeConnection): boolean {
  return connection.name.endsWith('-publisher');
}
