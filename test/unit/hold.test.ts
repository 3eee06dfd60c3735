import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Hold } from '../../src/pipeline/hold.ts';

const MAX_HOLD_MS = 60_000;

/** A drain signal that counts the listeners added to it. */
function countingDrain(): { controller: AbortController; added: () => number } {
  const controller = new AbortController();
  let added = 0;
  const add = controller.signal.addEventListener.bind(controller.signal);
  controller.signal.addEventListener = ((...args: Parameters<typeof add>) => {
    added++;
    add(...args);
  }) as typeof add;
  return { controller, added: () => added };
}

function delivery(receivedAt = Date.now()) {
  const lost = new AbortController();
  return { lost, delivery: { receivedAt, lost: lost.signal } };
}

describe('Hold.aborted', () => {
  it('answers without listening on the drain signal every delivery in flight shares', () => {
    const drain = countingDrain();
    const hold = new Hold(delivery().delivery, drain.controller.signal, MAX_HOLD_MS);
    assert.equal(hold.aborted, false);
    assert.equal(drain.added(), 0);
    hold.dispose();
  });

  it('is over on shutdown, when the channel is lost, and once held for maxHoldMs, as the signal is', () => {
    const cases: [string, (d: ReturnType<typeof delivery>, drain: AbortController) => Hold][] = [
      [
        'drain',
        (d, drain) => {
          drain.abort();
          return new Hold(d.delivery, drain.signal, MAX_HOLD_MS);
        },
      ],
      [
        'lost',
        (d, drain) => {
          d.lost.abort();
          return new Hold(d.delivery, drain.signal, MAX_HOLD_MS);
        },
      ],
      [
        'expired',
        (_, drain) => new Hold(delivery(Date.now() - MAX_HOLD_MS).delivery, drain.signal, MAX_HOLD_MS),
      ],
    ];
    for (const [name, make] of cases) {
      const hold = make(delivery(), new AbortController());
      assert.equal(hold.aborted, true, name);
      assert.equal(hold.signal.aborted, true, name);
      hold.dispose();
    }
  });

  it('follows the signal once there is one', () => {
    const d = delivery();
    const drain = new AbortController();
    const hold = new Hold(d.delivery, drain.signal, MAX_HOLD_MS);
    const signal = hold.signal;
    assert.equal(hold.aborted, false);
    d.lost.abort();
    assert.equal(signal.aborted, true);
    assert.equal(hold.aborted, true);
    hold.dispose();
  });
});
