import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type AckHold, type AckSink, ackHoldFor, ChannelAcks } from '../../src/amqp/acks.ts';

interface Message {
  readonly fields: { readonly deliveryTag: number };
}

const message = (deliveryTag: number): Message => ({ fields: { deliveryTag } });

/**
 * The broker's side of one channel, as RabbitMQ keeps it: the outstanding delivery tags. An ack
 * or nack naming a tag it does not hold is a channel error ("unknown delivery tag").
 */
class Broker implements AckSink<Message> {
  readonly outstanding = new Set<number>();
  readonly frames: string[] = [];
  #next = 1;

  deliver(): Message {
    const tag = this.#next++;
    this.outstanding.add(tag);
    return message(tag);
  }

  ack(m: Message, multiple: boolean): void {
    const tag = m.fields.deliveryTag;
    this.frames.push(multiple ? `ack<=${tag}` : `ack ${tag}`);
    if (!this.outstanding.has(tag)) throw new Error(`unknown delivery tag ${tag}`);
    if (!multiple) this.outstanding.delete(tag);
    else for (const t of [...this.outstanding]) if (t <= tag) this.outstanding.delete(t);
  }

  requeue(m: Message): void {
    const tag = m.fields.deliveryTag;
    this.frames.push(`requeue ${tag}`);
    if (!this.outstanding.delete(tag)) throw new Error(`unknown delivery tag ${tag}`);
  }
}

/** Time in the hands of the test: it decides where an event-loop turn ends and when a hold expires. */
function setup(ackHold?: AckHold): {
  broker: Broker;
  acks: ChannelAcks<Message>;
  endTurn: () => void;
  expireHold: () => void;
} {
  const broker = new Broker();
  let turn: (() => void) | undefined;
  let hold: (() => void) | undefined;
  const acks = new ChannelAcks<Message>(broker, ackHold, {
    endOfTurn: (flush) => {
      assert.equal(turn, undefined, 'one flush scheduled per turn');
      turn = flush;
    },
    after: (ms, flush) => {
      assert.equal(ms, ackHold?.ms);
      assert.equal(hold, undefined, 'one hold timer at a time');
      hold = flush;
      return () => {
        hold = undefined;
      };
    },
  });
  const endTurn = () => {
    const flush = turn;
    turn = undefined;
    flush?.();
  };
  const expireHold = () => {
    const flush = hold;
    hold = undefined;
    flush?.();
  };
  return { broker, acks, endTurn, expireHold };
}

function deliverMany(broker: Broker, acks: ChannelAcks<Message>, n: number): Message[] {
  return Array.from({ length: n }, () => {
    const m = broker.deliver();
    acks.delivered(m);
    return m;
  });
}

describe('ChannelAcks', () => {
  it('sends nothing until the turn ends, then one multiple ack for a run of acks', () => {
    const { broker, acks, endTurn } = setup();
    const ms = deliverMany(broker, acks, 5);
    for (const m of [ms[2], ms[0], ms[4], ms[1], ms[3]]) acks.ack(m as Message);
    assert.deepEqual(broker.frames, []);
    endTurn();
    assert.deepEqual(broker.frames, ['ack<=5']);
    assert.equal(broker.outstanding.size, 0);
  });

  it('sends a lone ack as a plain ack', () => {
    const { broker, acks, endTurn } = setup();
    const [m] = deliverMany(broker, acks, 1);
    acks.ack(m as Message);
    endTurn();
    assert.deepEqual(broker.frames, ['ack 1']);
  });

  it('never lets a multiple ack reach past a delivery still in flight', () => {
    const { broker, acks, endTurn } = setup();
    const ms = deliverMany(broker, acks, 6);
    // 3 is still being enqueued: 1 and 2 go together, 4 and 6 one by one.
    for (const i of [0, 1, 3, 5]) acks.ack(ms[i] as Message);
    endTurn();
    assert.deepEqual(broker.frames, ['ack 4', 'ack 6', 'ack<=2']);
    assert.deepEqual([...broker.outstanding].sort(), [3, 5]);
    // Once 3 and 5 are done one multiple ack names 5, the highest tag the broker still holds.
    acks.ack(ms[2] as Message);
    acks.ack(ms[4] as Message);
    endTurn();
    assert.deepEqual(broker.frames.slice(3), ['ack<=5']);
    assert.equal(broker.outstanding.size, 0);
  });

  it('sends a requeue at once, and a later multiple ack passes over it', () => {
    const { broker, acks, endTurn } = setup();
    const ms = deliverMany(broker, acks, 3);
    acks.requeue(ms[0] as Message);
    assert.deepEqual(broker.frames, ['requeue 1']);
    acks.ack(ms[1] as Message);
    acks.ack(ms[2] as Message);
    endTurn();
    assert.deepEqual(broker.frames, ['requeue 1', 'ack<=3']);
  });

  it('flushes on demand (before the channel closes) and schedules the next turn afresh', () => {
    const { broker, acks, endTurn } = setup();
    const ms = deliverMany(broker, acks, 2);
    acks.ack(ms[0] as Message);
    acks.flush();
    assert.deepEqual(broker.frames, ['ack 1']);
    endTurn();
    assert.deepEqual(broker.frames, ['ack 1'], 'the scheduled flush has nothing left to send');
    acks.ack(ms[1] as Message);
    endTurn();
    assert.deepEqual(broker.frames, ['ack 1', 'ack 2']);
  });

  it('drops what it holds once the channel is gone: those tags belong to no one now', () => {
    const { broker, acks, endTurn } = setup();
    const ms = deliverMany(broker, acks, 3);
    acks.ack(ms[0] as Message);
    acks.close();
    acks.ack(ms[1] as Message);
    acks.requeue(ms[2] as Message);
    endTurn();
    assert.deepEqual(broker.frames, []);
  });

  it('with a hold, keeps acks above an unfinished delivery back until it finishes', () => {
    const { broker, acks, endTurn, expireHold } = setup({ ms: 20, batch: 1 });
    const ms = deliverMany(broker, acks, 6);
    for (const i of [0, 1, 3, 4, 5]) acks.ack(ms[i] as Message);
    endTurn();
    assert.deepEqual(broker.frames, ['ack<=2']);
    acks.ack(ms[2] as Message);
    endTurn();
    assert.deepEqual(broker.frames, ['ack<=2', 'ack<=6']);
    expireHold();
    assert.deepEqual(broker.frames, ['ack<=2', 'ack<=6'], 'the hold was cancelled once nothing was held');
  });

  it('with a hold, sends held acks one by one when it expires, then holds afresh', () => {
    const { broker, acks, endTurn, expireHold } = setup({ ms: 20, batch: 1 });
    const ms = deliverMany(broker, acks, 5);
    acks.ack(ms[1] as Message);
    acks.ack(ms[2] as Message);
    endTurn();
    assert.deepEqual(broker.frames, []);
    expireHold();
    assert.deepEqual(broker.frames, ['ack 2', 'ack 3']);
    acks.ack(ms[4] as Message);
    endTurn();
    assert.deepEqual(broker.frames, ['ack 2', 'ack 3']);
    acks.flush();
    assert.deepEqual(broker.frames, ['ack 2', 'ack 3', 'ack 5'], 'flush (before close) sends what is held');
    assert.deepEqual([...broker.outstanding].sort(), [1, 4]);
  });

  it('with a batch size, lets acks wait until that many are waiting, then sends them as one', () => {
    const { broker, acks, endTurn, expireHold } = setup({ ms: 20, batch: 3 });
    const ms = deliverMany(broker, acks, 4);
    acks.ack(ms[0] as Message);
    endTurn();
    acks.ack(ms[1] as Message);
    endTurn();
    assert.deepEqual(broker.frames, []);
    acks.ack(ms[2] as Message);
    endTurn();
    assert.deepEqual(broker.frames, ['ack<=3']);
    expireHold();
    assert.deepEqual(broker.frames, ['ack<=3'], 'the wait was cancelled once nothing waited');
    // Fewer than the batch: they go when the first of them has waited the hold.
    acks.ack(ms[3] as Message);
    endTurn();
    assert.deepEqual(broker.frames, ['ack<=3']);
    expireHold();
    assert.deepEqual(broker.frames, ['ack<=3', 'ack 4']);
    assert.equal(broker.outstanding.size, 0);
  });

  it('keeps the broker in step with the application over random interleavings', () => {
    let seed = 42;
    const random = () => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    for (let run = 0; run < 200; run++) {
      const holds = [undefined, { ms: 20, batch: 1 }, { ms: 20, batch: 5 }];
      const { broker, acks, endTurn, expireHold } = setup(holds[run % holds.length]);
      const inFlight: Message[] = [];
      const settledByApp = new Set<number>();
      for (let step = 0; step < 300; step++) {
        const r = random();
        if (r < 0.4 || inFlight.length === 0) {
          inFlight.push(...deliverMany(broker, acks, 1 + Math.floor(random() * 3)));
        } else if (r < 0.85) {
          const [m] = inFlight.splice(Math.floor(random() * inFlight.length), 1) as [Message];
          settledByApp.add(m.fields.deliveryTag);
          if (random() < 0.9) acks.ack(m);
          else acks.requeue(m);
        } else if (r < 0.95) {
          endTurn();
        } else {
          expireHold();
        }
        // Nothing the application still holds was ever settled on the broker.
        for (const m of inFlight) assert.ok(broker.outstanding.has(m.fields.deliveryTag));
      }
      endTurn();
      expireHold();
      assert.deepEqual(
        [...broker.outstanding].sort((a, b) => a - b),
        inFlight.map((m) => m.fields.deliveryTag).sort((a, b) => a - b),
      );
    }
  });
});

describe('ackHoldFor', () => {
  it('lets single-mode acks fill half the prefetch slots beyond the calls in flight', () => {
    assert.deepEqual(ackHoldFor({ prefetch: 30, concurrency: 10 }, false), { ms: 20, batch: 10 });
    assert.deepEqual(ackHoldFor({ prefetch: 13, concurrency: 10 }, false), { ms: 20, batch: 1 });
  });

  it('sends single-mode acks every turn when the prefetch leaves no slot to spare', () => {
    assert.equal(ackHoldFor({ prefetch: 10, concurrency: 10 }, false), undefined);
    assert.equal(ackHoldFor({ prefetch: 11, concurrency: 10 }, false), undefined);
  });

  it('in batch mode, holds acks only for the call ahead', () => {
    assert.deepEqual(ackHoldFor({ prefetch: 1000, concurrency: 10 }, true), { ms: 20, batch: 1 });
  });
});
