import type { Delivery } from './delivery.ts';

/**
 * How long a delivery may be worked on before it must go back to the broker: its signal aborts
 * on shutdown, when the delivery's channel is lost, or `maxHoldMs` after it arrived (so it never
 * outlives RabbitMQ's consumer_timeout). The timer and listeners only exist once asked for: the
 * success path must not pay for a timer per message.
 */
export class Hold {
  readonly #delivery: Pick<Delivery, 'receivedAt' | 'lost'>;
  readonly #drain: AbortSignal;
  readonly #maxHoldMs: number;
  #controller: AbortController | undefined;
  #timer: NodeJS.Timeout | undefined;
  #expired = false;
  readonly #abort = (): void => this.#controller?.abort();

  constructor(delivery: Pick<Delivery, 'receivedAt' | 'lost'>, drain: AbortSignal, maxHoldMs: number) {
    this.#delivery = delivery;
    this.#drain = drain;
    this.#maxHoldMs = maxHoldMs;
  }

  get signal(): AbortSignal {
    if (this.#controller !== undefined) return this.#controller.signal;
    const controller = new AbortController();
    this.#controller = controller;
    for (const source of [this.#drain, this.#delivery.lost]) {
      source.addEventListener('abort', this.#abort, { once: true });
      if (source.aborted) controller.abort();
    }
    const expire = (): void => {
      this.#expired = true;
      controller.abort();
    };
    const remaining = this.#delivery.receivedAt + this.#maxHoldMs - Date.now();
    if (remaining <= 0) expire();
    else this.#timer = setTimeout(expire, remaining);
    return controller.signal;
  }

  /**
   * Whether the hold is over, without making the signal: the success path asks this before every
   * call, and a signal per delivery listens on the drain signal that every delivery in flight
   * shares, whose listeners Node's EventTarget walks on each add (a thousand in batch mode).
   */
  get aborted(): boolean {
    if (this.#controller !== undefined) return this.#controller.signal.aborted;
    return this.#drain.aborted || this.#delivery.lost.aborted || this.#elapsed() >= this.#maxHoldMs;
  }

  /** How long the delivery has been held. */
  get heldMs(): number {
    return this.#expired ? Math.max(this.#maxHoldMs, this.#elapsed()) : this.#elapsed();
  }

  dispose(): void {
    if (this.#controller === undefined) return;
    clearTimeout(this.#timer);
    this.#drain.removeEventListener('abort', this.#abort);
    this.#delivery.lost.removeEventListener('abort', this.#abort);
  }

  #elapsed(): number {
    return Date.now() - this.#delivery.receivedAt;
  }
}
