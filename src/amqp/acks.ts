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
 * Acks can also wait, up to `hold.ms`, to share a frame: until `hold.batch` of them are waiting,
 * and, above the lowest delivery in flight, until that one finishes too (a bulk call returns a
 * hundred at once while the one before it is still running). A waiting ack keeps its prefetch
 * slot, so they may only wait for as many as the prefetch leaves spare: see `ackHoldFor`.
 *
 * Requeues are sent at once: nothing gains from delaying them, and a tag nacked individually is
 * no longer outstanding, so a later `multiple` ack passes over it.
 */

export interface AckSink<M> {
  ack(message: M, multiple: boolean): void;
  requeue(message: M): void;
}

/** How acks wait to share frames; without one they go out at the end of every event-loop turn. */
export interface AckHold {
  /** Longest an ack waits. */
  readonly ms: number;
  /** Acks wait until this many are waiting. */
  readonly batch: number;
}

/** Longest an ack waits: about one bulk call under load, several single calls. */
const ACK_HOLD_MS = 20;

/**
 * How a source's acks wait. Every ack frame costs the bridge a socket write and the broker a
 * frame to parse and settle, the broker's largest per-message cost after the delivery itself.
 * Waiting acks keep their prefetch slots: in single mode they may fill half of the slots the
 * prefetch leaves beyond the calls in flight, so a call that returns still finds a delivery
 * waiting; with none spare, acks go out every turn. In batch mode a bulk call answers for many
 * deliveries at once, and its acks wait only for the call ahead of it.
 */
export function ackHoldFor(
  source: { readonly prefetch: number; readonly concurrency: number },
  batchMode: boolean,
): AckHold | undefined {
  if (batchMode) return { ms: ACK_HOLD_MS, batch: 1 };
  const spare = source.prefetch - source.concurrency;
  return spare > 1 ? { ms: ACK_HOLD_MS, batch: Math.floor(spare / 2) } : undefined;
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
  readonly #hold: AckHold | undefined;
  readonly #timing: AckTiming;
  /** Delivered and neither acked nor requeued; delivery tags rise, so the first is the lowest. */
  readonly #unsettled = new Set<number>();
  #pending: M[] = [];
  #scheduled = false;
  #cancelHold: (() => void) | undefined;
  #closed = false;

  constructor(sink: AckSink<M>, hold?: AckHold, timing: AckTiming = realTiming) {
    this.#sink = sink;
    this.#hold = hold;
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
      const hold = this.#hold;
      if (hold !== undefined && this.#pending.length < hold.batch) this.#waitAtMost(hold.ms);
      else this.#send(hold);
    });
  }

  requeue(message: M): void {
    if (this.#closed) return;
    this.#unsettled.delete(message.fields.deliveryTag);
    this.#sink.requeue(message);
  }

  /** Sends every ack not sent yet. Also called before the channel is closed. */
  flush(): void {
    this.#send(undefined);
  }

  /** Sends what may go now; with a hold, acks above the lowest delivery in flight wait for it. */
  #send(hold: AckHold | undefined): void {
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
      } else if (hold !== undefined) {
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
    } else if (hold !== undefined) {
      this.#waitAtMost(hold.ms);
    }
  }

  /** Sends everything once the longest-waiting ack has waited `ms` (unless sent before). */
  #waitAtMost(ms: number): void {
    this.#cancelHold ??= this.#timing.after(ms, () => {
      this.#cancelHold = undefined;
      this.#send(undefined);
    });
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
