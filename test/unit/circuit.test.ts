import assert from 'node:assert/strict';
import { getEventListeners } from 'node:events';
import type { TestContext } from 'node:test';
import { describe, it } from 'node:test';
import type { CircuitOptions } from '../../src/resilience/circuit.ts';
import { Circuit } from '../../src/resilience/circuit.ts';

/**
 * With random() ≈ 1 the jittered probe delays are 100, 199, 399, 799, 999, 999 … ms
 * (initial 100, doubling, capped at 1000, never below the initial delay).
 */
const PROBE_DELAYS = [100, 199, 399, 799, 999, 999];

function setup(t: TestContext, overrides: Partial<CircuitOptions> = {}) {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const events: string[] = [];
  const circuit = new Circuit({
    failureThreshold: 3,
    backoff: { initialDelayMs: 100, maxDelayMs: 1_000 },
    random: () => 0.999,
    onIntake: (allowed) => events.push(`intake:${allowed}`),
    onOpen: (reason) => events.push(`open:${reason}`),
    onClose: () => events.push('close'),
    ...overrides,
  });
  const tick = async (ms: number): Promise<void> => {
    t.mock.timers.tick(ms);
    await settle();
  };
  return { circuit, events, tick };
}

interface Tracked {
  readonly signal: AbortSignal;
  readonly abort: () => void;
  /** undefined while the permit is still pending. */
  value: boolean | undefined;
}

function waiter(circuit: Circuit): Tracked {
  const controller = new AbortController();
  const tracked: Tracked = { signal: controller.signal, abort: () => controller.abort(), value: undefined };
  void circuit.permit(controller.signal).then((allowed) => {
    tracked.value = allowed;
  });
  return tracked;
}

/** Lets resolved permits run their callbacks (setImmediate is not mocked). */
function settle(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

describe('Circuit while closed', () => {
  it('permits at once and reports nothing', async (t) => {
    const { circuit, events } = setup(t);
    assert.equal(circuit.isOpen, false);
    assert.equal(await circuit.permit(new AbortController().signal), true);
    assert.deepEqual(events, []);
  });

  it('opens at once on an endpoint fault and stops intake', async (t) => {
    const { circuit, events } = setup(t);
    circuit.failure('endpoint_fault');
    assert.equal(circuit.isOpen, true);
    assert.deepEqual(events, ['open:endpoint_fault', 'intake:false']);
    const w = waiter(circuit);
    await settle();
    assert.equal(w.value, undefined);
    circuit.close();
  });

  it('opens on transient failures only after failureThreshold in a row', async (t) => {
    const { circuit, events } = setup(t);
    circuit.failure('transient');
    circuit.failure('transient');
    assert.equal(circuit.isOpen, false);
    assert.equal(await circuit.permit(new AbortController().signal), true);
    assert.deepEqual(events, []);
    circuit.failure('transient');
    assert.equal(circuit.isOpen, true);
    assert.deepEqual(events, ['open:transient', 'intake:false']);
    circuit.close();
  });

  it('starts counting again after a success', (t) => {
    const { circuit, events } = setup(t);
    circuit.failure('transient');
    circuit.failure('transient');
    circuit.success();
    circuit.failure('transient');
    circuit.failure('transient');
    assert.equal(circuit.isOpen, false);
    assert.deepEqual(events, []);
    circuit.failure('transient');
    assert.equal(circuit.isOpen, true);
    circuit.close();
  });

  it('opens on the first transient failure with a threshold of 1', (t) => {
    const { circuit, events } = setup(t, { failureThreshold: 1 });
    circuit.failure('transient');
    assert.deepEqual(events, ['open:transient', 'intake:false']);
    circuit.close();
  });
});

describe('Circuit while open', () => {
  it('lets exactly one waiter through as the probe once the backoff has passed', async (t) => {
    const { circuit, events, tick } = setup(t);
    circuit.failure('endpoint_fault');
    const [a, b, c] = [waiter(circuit), waiter(circuit), waiter(circuit)];
    await tick(99);
    assert.deepEqual([a.value, b.value, c.value], [undefined, undefined, undefined]);
    await tick(1);
    assert.deepEqual([a.value, b.value, c.value], [true, undefined, undefined]);
    // Intake stays off: the probe came from a held delivery, not from the queue.
    assert.deepEqual(events, ['open:endpoint_fault', 'intake:false']);
    await tick(10_000);
    assert.deepEqual([b.value, c.value], [undefined, undefined]);
    circuit.close();
  });

  it('closes on a probe success and releases the waiters gradually, doubling per success', async (t) => {
    const { circuit, events, tick } = setup(t);
    circuit.failure('endpoint_fault');
    const [a, b, c, d, e] = [
      waiter(circuit),
      waiter(circuit),
      waiter(circuit),
      waiter(circuit),
      waiter(circuit),
    ];
    await tick(100);
    assert.equal(a.value, true);
    circuit.success();
    await settle();
    assert.equal(circuit.isOpen, false);
    assert.deepEqual(events, ['open:endpoint_fault', 'intake:false', 'close', 'intake:true']);
    assert.deepEqual([b.value, c.value], [true, undefined], 'one call first');
    assert.equal(circuit.ramping, true);
    const late = waiter(circuit);
    await settle();
    assert.equal(late.value, undefined, 'a new caller queues behind the held ones while ramping');
    circuit.success();
    await settle();
    assert.deepEqual([c.value, d.value, e.value], [true, true, undefined], 'then two');
    circuit.success();
    await settle();
    assert.deepEqual([e.value, late.value], [true, true], 'then up to four');
    assert.equal(circuit.ramping, false);
    assert.equal(await circuit.permit(new AbortController().signal), true);
    await tick(10_000);
    assert.equal(events.length, 4, 'no probe timer left behind');
  });

  /** Three calls held while open; the probe (the first) succeeds, so the circuit ramps. */
  async function ramping(t: TestContext) {
    const { circuit, tick } = setup(t);
    circuit.failure('endpoint_fault');
    const waiters = [waiter(circuit), waiter(circuit), waiter(circuit)];
    await tick(100);
    circuit.success();
    await settle();
    return { circuit, tick, waiters };
  }

  it('keeps releasing while ramping even when the released calls never report back', async (t) => {
    const { tick, waiters } = await ramping(t);
    assert.deepEqual(
      waiters.map((w) => w.value),
      [true, true, undefined],
    );
    await tick(99);
    assert.equal(waiters[2]?.value, undefined);
    await tick(1);
    assert.equal(waiters[2]?.value, true, 'released after the initial delay');
  });

  it('passes an abandoned call on to the next waiter while ramping', async (t) => {
    const { circuit, waiters } = await ramping(t);
    assert.equal(waiters[2]?.value, undefined);
    circuit.abandon();
    await settle();
    assert.equal(waiters[2]?.value, true);
  });

  it('probes by itself when nothing waits, and closes on an idle probe success', async (t) => {
    const probes: string[] = [];
    let answer = false;
    const { circuit, events, tick } = setup(t, {
      idleProbe: async () => {
        probes.push('probe');
        return answer;
      },
    });
    circuit.failure('endpoint_fault');
    await tick(100);
    assert.deepEqual(probes, ['probe']);
    assert.equal(circuit.isOpen, true, 'a failed idle probe keeps it open');
    assert.ok(!events.slice(2).includes('intake:true'), 'and intake paused');
    answer = true;
    await tick(199);
    assert.deepEqual(probes, ['probe', 'probe']);
    assert.equal(circuit.isOpen, false);
    assert.deepEqual(events.slice(-2), ['close', 'intake:true']);
  });

  it('after a failed probe pauses intake and waits longer before the next one', async (t) => {
    const { circuit, events, tick } = setup(t);
    circuit.failure('endpoint_fault');
    const waiters = PROBE_DELAYS.map(() => waiter(circuit));
    for (const [i, delay] of PROBE_DELAYS.entries()) {
      await tick(delay - 1);
      assert.equal(waiters[i]?.value, undefined, `probe ${i} not before ${delay} ms`);
      await tick(1);
      assert.equal(waiters[i]?.value, true, `probe ${i} at ${delay} ms`);
      assert.equal(waiters[i + 1]?.value, undefined, 'only one probe at a time');
      circuit.failure('transient');
    }
    assert.equal(circuit.isOpen, true);
    assert.deepEqual(events, [
      'open:endpoint_fault',
      'intake:false',
      ...PROBE_DELAYS.map(() => 'intake:false'),
    ]);
    circuit.close();
  });

  it('with nobody waiting re-enables intake after the backoff; the next caller is the probe', async (t) => {
    const { circuit, events, tick } = setup(t);
    circuit.failure('transient');
    circuit.failure('transient');
    circuit.failure('transient');
    await tick(100);
    assert.deepEqual(events, ['open:transient', 'intake:false', 'intake:true']);
    const probe = waiter(circuit);
    const second = waiter(circuit);
    await settle();
    assert.equal(probe.value, true);
    assert.equal(second.value, undefined, 'a second caller waits while the probe is in flight');
    circuit.failure('transient');
    assert.deepEqual(events, ['open:transient', 'intake:false', 'intake:true', 'intake:false']);
    await tick(198);
    assert.equal(second.value, undefined);
    await tick(1);
    assert.equal(second.value, true);
    circuit.success();
    assert.deepEqual(events.slice(-2), ['close', 'intake:true']);
  });

  it('ignores failures of calls that were already in flight when it opened', async (t) => {
    const { circuit, events, tick } = setup(t);
    circuit.failure('endpoint_fault');
    const w = waiter(circuit);
    await tick(50);
    circuit.failure('transient');
    circuit.failure('endpoint_fault');
    assert.deepEqual(events, ['open:endpoint_fault', 'intake:false']);
    await tick(50);
    assert.equal(w.value, true, 'the first probe is still due after the first backoff');
    circuit.close();
  });

  it('starts again from the initial backoff after it has closed', async (t) => {
    const { circuit, tick } = setup(t);
    circuit.failure('endpoint_fault');
    for (const delay of PROBE_DELAYS.slice(0, 3)) {
      const w = waiter(circuit);
      await tick(delay);
      assert.equal(w.value, true);
      circuit.failure('transient');
    }
    const last = waiter(circuit);
    await tick(PROBE_DELAYS[3] ?? 0);
    assert.equal(last.value, true);
    circuit.success();
    circuit.failure('endpoint_fault');
    const again = waiter(circuit);
    await tick(99);
    assert.equal(again.value, undefined);
    await tick(1);
    assert.equal(again.value, true);
    circuit.close();
  });
});

describe('Circuit waiters', () => {
  it('resolves an aborted waiter with false and never grants it the probe', async (t) => {
    const { circuit, events, tick } = setup(t);
    circuit.failure('endpoint_fault');
    const a = waiter(circuit);
    const b = waiter(circuit);
    a.abort();
    await settle();
    assert.equal(a.value, false);
    assert.equal(b.value, undefined);
    await tick(100);
    assert.equal(b.value, true);
    assert.deepEqual(events, ['open:endpoint_fault', 'intake:false']);
    circuit.close();
  });

  it('re-enables intake when every waiter has aborted before the backoff ends', async (t) => {
    const { circuit, events, tick } = setup(t);
    circuit.failure('endpoint_fault');
    const a = waiter(circuit);
    a.abort();
    await tick(100);
    assert.equal(a.value, false);
    assert.deepEqual(events, ['open:endpoint_fault', 'intake:false', 'intake:true']);
    assert.equal(await circuit.permit(new AbortController().signal), true);
    circuit.close();
  });

  it('refuses at once a caller whose signal is already aborted', async (t) => {
    const { circuit } = setup(t);
    circuit.failure('endpoint_fault');
    const controller = new AbortController();
    controller.abort();
    assert.equal(await circuit.permit(controller.signal), false);
    circuit.close();
  });

  it('removes its abort listener once a waiter is granted', async (t) => {
    const { circuit, tick } = setup(t);
    circuit.failure('endpoint_fault');
    const a = waiter(circuit);
    const b = waiter(circuit);
    assert.equal(getEventListeners(a.signal, 'abort').length, 1);
    await tick(100);
    assert.equal(a.value, true);
    assert.equal(getEventListeners(a.signal, 'abort').length, 0);
    circuit.success();
    await settle();
    assert.equal(b.value, true);
    assert.equal(getEventListeners(b.signal, 'abort').length, 0);
  });

  it('passes an abandoned probe on to the next waiter at once', async (t) => {
    const { circuit, events, tick } = setup(t);
    circuit.failure('endpoint_fault');
    const a = waiter(circuit);
    const b = waiter(circuit);
    const c = waiter(circuit);
    await tick(100);
    assert.equal(a.value, true);
    circuit.abandon();
    await settle();
    assert.deepEqual([b.value, c.value], [true, undefined]);
    assert.deepEqual(events, ['open:endpoint_fault', 'intake:false']);
    circuit.close();
  });

  it('re-enables intake when an abandoned probe has nobody to pass to', async (t) => {
    const { circuit, events, tick } = setup(t);
    circuit.failure('endpoint_fault');
    const a = waiter(circuit);
    await tick(100);
    assert.equal(a.value, true);
    circuit.abandon();
    assert.deepEqual(events, ['open:endpoint_fault', 'intake:false', 'intake:true']);
    assert.equal(await circuit.permit(new AbortController().signal), true);
    circuit.close();
  });

  it('ignores abandon() when no probe is in flight', async (t) => {
    const { circuit, events } = setup(t);
    circuit.abandon();
    circuit.failure('endpoint_fault');
    const a = waiter(circuit);
    circuit.abandon();
    await settle();
    assert.equal(a.value, undefined);
    assert.deepEqual(events, ['open:endpoint_fault', 'intake:false']);
    circuit.close();
  });

  it('close() releases every waiter with false and cancels the probe timer', async (t) => {
    const { circuit, events, tick } = setup(t);
    circuit.failure('endpoint_fault');
    const a = waiter(circuit);
    const b = waiter(circuit);
    circuit.close();
    await settle();
    assert.deepEqual([a.value, b.value], [false, false]);
    assert.equal(getEventListeners(a.signal, 'abort').length, 0);
    await tick(10_000);
    assert.deepEqual(events, ['open:endpoint_fault', 'intake:false']);
  });
});

describe('Circuit generations', () => {
  it('does not take a late failure from a call that started before the circuit opened as the probe', async (t) => {
    const { circuit, events, tick } = setup(t);
    const before = circuit.generation;
    circuit.failure('endpoint_fault');
    const probe = waiter(circuit);
    await tick(100);
    assert.equal(probe.value, true);
    // A call from before the opening fails now: the probe is still in flight.
    circuit.failure('transient', before);
    const next = waiter(circuit);
    await tick(10_000);
    assert.equal(next.value, undefined, 'no second probe while the first is in flight');
    assert.deepEqual(events, ['open:endpoint_fault', 'intake:false']);
    circuit.failure('transient', circuit.generation);
    assert.deepEqual(events, ['open:endpoint_fault', 'intake:false', 'intake:false']);
    circuit.close();
  });
});
