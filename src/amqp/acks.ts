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
 * Requeues are sent at once: nothing gains from delaying them, and a tag nacked individually is
 * no longer outstanding, so a later `multiple` ack passes over it.
 */

export interface AckSink<M> {
  ack(message: M, multiple: boolean): void;
  requeue(message: M): void;
}

export type Schedule = (flush: () => void) => void;

const endOfTurn: Schedule = (flush) => {
  setImmediate(flush);
};

export class ChannelAcks<M extends { readonly fields: { readonly deliveryTag: number } }> {
  readonly #sink: AckSink<M>;
  readonly #schedule: Schedule;
  /** Delivered and neither acked nor requeued; delivery tags rise, so the first is the lowest. */
  readonly #unsettled = new Set<number>();
  #pending: M[] = [];
  #scheduled = false;
  #closed = false;

  constructor(sink: AckSink<M>, schedule: Schedule = endOfTurn) {
    this.#sink = sink;
    this.#schedule = schedule;
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
    this.#schedule(() => {
      this.#scheduled = false;
      this.flush();
    });
  }

  requeue(message: M): void {
    if (this.#closed) return;
    this.#unsettled.delete(message.fields.deliveryTag);
    this.#sink.requeue(message);
  }

  /** Sends every ack not sent yet. Also called before the channel is closed. */
  flush(): void {
    const pending = this.#pending;
    if (pending.length === 0 || this.#closed) return;
    this.#pending = [];
    const floor = this.#lowestUnsettled();
    let highestBelow: M | undefined;
    let below = 0;
    for (const message of pending) {
      const tag = message.fields.deliveryTag;
      if (tag < floor) {
        below++;
        if (highestBelow === undefined || tag > highestBelow.fields.deliveryTag) highestBelow = message;
      } else {
        this.#sink.ack(message, false);
      }
    }
    if (highestBelow !== undefined) this.#sink.ack(highestBelow, below > 1);
  }

  /** The channel is gone: its tags mean nothing any more, and the broker requeues them. */
  close(): void {
    this.#closed = true;
    this.#pending = [];
    this.#unsettled.clear();
  }

  #lowestUnsettled(): number {
    for (const tag of this.#unsettled) return tag;
    return Number.POSITIVE_INFINITY;
  }
}
