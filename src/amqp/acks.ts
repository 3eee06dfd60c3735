/**
 * The acks of one channel, coalesced. An ack frame per message is, after the RPC itself, the
 * largest per-message cost on both sides of the connection: the bridge writes one small frame
 * per message and the broker parses and settles each one. So acks wait for the end of the
 * current event-loop turn and then go out together: one `multiple` ack covers every acked tag
 * below the lowest delivery still in flight, and only the acks above it are sent one by one.
 *
 * `multiple` acks every outstanding tag up to the one named, so it must never reach past a
 * delivery whose job has not been written yet: that delivery would be acked, and lost if the
 * bridge died before its call returned. The unsettled set is what keeps it below them, and it
 * stays as small as the prefetch window. The named tag is always one being acked now, so the
 * broker still holds it (naming a tag it no longer holds closes the channel).
 *
 * Acks above that delivery can wait up to `holdMs` for it to finish, so that they too go out in
 * one frame. Worth it when many deliveries finish together out of order (a bulk call returns a
 * hundred at once while the one before it is still running); not with one job per call, where
 * the prefetch window is the concurrency and an ack held back is a slot left idle.
 *
 * Requeues are sent at once: nothing gains from delaying them, and a tag nacked individually is
 * no longer outstanding, so a later `multiple` ack passes over it.
 */

export interface AckSink<M> {
  ack(message: M, multiple: boolean): void;
  requeue(message: M): void;
}

export interface AckTiming {
  /** Runs `flush` once the current event-loop turn is over. */
  readonly endOfTurn: (flush: () => void) => void;
  /** Runs `flush` after `ms`, unless cancelled. */
  readonly after: (ms: number, flush: () => void) => () => void;
}

const realTiming: AckTiming = {
  endOfTurn: (flush) => {
    setImmediate(flush);
  },
  after: (ms, flush) => {
    const timer = setTimeout(flush, ms);
    return () => clearTimeout(timer);
  },
};

export class ChannelAcks<M extends { readonly fields: { readonly deliveryTag: number } }> {
  readonly #sink: AckSink<M>;
  readonly #holdMs: number;
  readonly #timing: AckTiming;
  /** Delivered and neither acked nor requeued; delivery tags rise, so the first is the lowest. */
  readonly #unsettled = new Set<number>();
  #pending: M[] = [];
  #scheduled = false;
  #cancelHold: (() => void) | undefined;
  #closed = false;

  constructor(sink: AckSink<M>, holdMs = 0, timing: AckTiming = realTiming) {
    this.#sink = sink;
    this.#holdMs = holdMs;
    this.#timing = timing;
  }

  delivered(message: M): void {
    this.#unsettled.add(message.fields.deliveryTag);
  }

  ack(message: M): void {
    if (this.#closed) return;
    this.#unsettled.delete(message.fields.deliveryTag);
    this.#pending.push(message);
    if (this.#scheduled) return;
    this.#scheduled = true;
    this.#timing.endOfTurn(() => {
      this.#scheduled = false;
      this.#send(this.#holdMs > 0);
    });
  }

  requeue(message: M): void {
    if (this.#closed) return;
    this.#unsettled.delete(message.fields.deliveryTag);
    this.#sink.requeue(message);
  }

  /** Sends every ack not sent yet. Also called before the channel is closed. */
  flush(): void {
    this.#send(false);
  }

  #send(holdAbove: boolean): void {
    if (this.#closed) return;
    const floor = this.#lowestUnsettled();
    const held: M[] = [];
    let highestBelow: M | undefined;
    let below = 0;
    for (const message of this.#pending) {
      const tag = message.fields.deliveryTag;
      if (tag < floor) {
        below++;
        if (highestBelow === undefined || tag > highestBelow.fields.deliveryTag) highestBelow = message;
      } else if (holdAbove) {
        held.push(message);
      } else {
        this.#sink.ack(message, false);
      }
    }
    this.#pending = held;
    if (highestBelow !== undefined) this.#sink.ack(highestBelow, below > 1);
    if (held.length === 0) {
      this.#cancelHold?.();
      this.#cancelHold = undefined;
    } else {
      this.#cancelHold ??= this.#timing.after(this.#holdMs, () => {
        this.#cancelHold = undefined;
        this.#send(false);
      });
    }
  }

  /** The channel is gone: its tags mean nothing any more, and the broker requeues them. */
  close(): void {
    this.#closed = true;
    this.#cancelHold?.();
    this.#cancelHold = undefined;
    this.#pending = [];
    this.#unsettled.clear();
  }

  #lowestUnsettled(): number {
    for (const tag of this.#unsettled) return tag;
    return Number.POSITIVE_INFINITY;
  }
}
