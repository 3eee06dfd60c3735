import { createHash } from 'node:crypto';
import type { Delivery } from './delivery.ts';

/**
 * How many times a message was handed back for failing while others succeeded. Quorum queues
 * count deliveries themselves (`x-delivery-count`); classic queues only say "redelivered", so
 * the bridge remembers its own hand-backs, by message id or else by a hash of the body, in a
 * bounded map (oldest forgotten first). Only redeliveries are looked up, so the hash is paid
 * for by the rare message that comes back, not by every one.
 */
export class HandBackHistory {
  readonly #limit: number;
  readonly #counts = new Map<string, number>();

  constructor(limit = 10_000) {
    this.#limit = limit;
  }

  /** Deliveries of this message before the current one, as far as anyone counted. */
  priorDeliveries(delivery: Delivery): number {
    const counted = delivery.origin.priorDeliveries;
    if (!delivery.origin.redelivered) return counted;
    return Math.max(counted, this.#counts.get(keyOf(delivery)) ?? 0);
  }

  handedBack(delivery: Delivery): void {
    const key = keyOf(delivery);
    const count = Math.max(this.#counts.get(key) ?? 0, delivery.origin.priorDeliveries) + 1;
    this.#counts.delete(key);
    this.#counts.set(key, count);
    if (this.#counts.size > this.#limit) {
      const oldest = this.#counts.keys().next().value;
      if (oldest !== undefined) this.#counts.delete(oldest);
    }
  }

  /** The message left for good (acked or dead-lettered): nothing more to count. */
  settled(delivery: Delivery): void {
    if (delivery.origin.redelivered && this.#counts.size > 0) this.#counts.delete(keyOf(delivery));
  }
}

function keyOf(delivery: Delivery): string {
  const id = delivery.attributes.messageId;
  if (id !== undefined && id !== '') return `${delivery.source.queue}\0id\0${id}`;
  return `${delivery.source.queue}\0body\0${createHash('sha256').update(delivery.body).digest('base64')}`;
}
