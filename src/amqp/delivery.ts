import { setMaxListeners } from 'node:events';
import type { Channel, ConsumeMessage } from 'amqplib';
import type { SourceConfig } from '../config/config.ts';
import type { Delivery, MessageAttributes, Origin } from '../pipeline/delivery.ts';
import { type AckHold, ChannelAcks } from './acks.ts';

/** A channel as deliveries see it; `open` turns false for good once the channel is gone. */
export interface Lease {
  readonly channel: Pick<Channel, 'ack' | 'nack'>;
  readonly acks: ChannelAcks<ConsumeMessage>;
  open: boolean;
  readonly lost: AbortController;
}

export function openLease(channel: Pick<Channel, 'ack' | 'nack'>, ackHold: AckHold | undefined): Lease {
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

export function endLease(lease: Lease | undefined): void {
  if (lease === undefined || !lease.open) return;
  lease.open = false;
  lease.acks.close();
  lease.lost.abort();
}

/** A delivery from amqplib, settled on the channel that delivered it. */
export class AmqpDelivery implements Delivery {
  readonly source: SourceConfig;
  readonly message: ConsumeMessage;
  readonly receivedAt: number;
  readonly origin: Origin;
  readonly #lease: Lease;
  #settled = false;

  constructor(source: SourceConfig, message: ConsumeMessage, lease: Lease, receivedAt: number) {
    this.source = source;
    this.message = message;
    this.#lease = lease;
    this.receivedAt = receivedAt;
    const { fields, properties } = message;
    const count: unknown = properties.headers?.['x-delivery-count'];
    this.origin = {
      exchange: fields.exchange,
      routingKey: fields.routingKey,
      redelivered: fields.redelivered,
      priorDeliveries: typeof count === 'number' && count >= 0 ? count : fields.redelivered ? 1 : 0,
      tag: fields.deliveryTag,
    };
    lease.acks.delivered(message);
  }

  get body(): Buffer {
    return this.message.content;
  }

  get attributes(): MessageAttributes {
    return this.message.properties as MessageAttributes;
  }

  get lost(): AbortSignal {
    return this.#lease.lost.signal;
  }

  get live(): boolean {
    return !this.#settled && this.#lease.open;
  }

  /** The ack goes out at the end of this event-loop turn, coalesced with the channel's others. */
  ack(): boolean {
    if (!this.#claim()) return false;
    this.#lease.acks.ack(this.message);
    return true;
  }

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
