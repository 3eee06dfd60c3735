/**
 * Virtual time for the model test. While installed it replaces the global timer functions,
 * `Date.now` and `Math.random` (the jitter of every backoff), so a run of minutes of bridge time
 * takes milliseconds and the same seed replays the same run. Time only moves in `advanceTo`,
 * which runs the due timers in order and lets every promise chain settle after each one.
 */

const real = {
  setTimeout: globalThis.setTimeout,
  clearTimeout: globalThis.clearTimeout,
  setInterval: globalThis.setInterval,
  clearInterval: globalThis.clearInterval,
  setImmediate: globalThis.setImmediate,
  clearImmediate: globalThis.clearImmediate,
  dateNow: Date.now,
  random: Math.random,
};

/** Resolves after every microtask queued so far (and those they queue) has run. */
export function settleMicrotasks(): Promise<void> {
  return new Promise((resolve) => real.setImmediate(resolve));
}

class FakeTimer {
  readonly id: number;
  due: number;
  seq: number;
  readonly callback: () => void;
  readonly interval: number | undefined;
  #ref = true;

  constructor(id: number, due: number, seq: number, callback: () => void, interval: number | undefined) {
    this.id = id;
    this.due = due;
    this.seq = seq;
    this.callback = callback;
    this.interval = interval;
  }

  ref(): this {
    this.#ref = true;
    return this;
  }

  unref(): this {
    this.#ref = false;
    return this;
  }

  hasRef(): boolean {
    return this.#ref;
  }

  [Symbol.toPrimitive](): number {
    return this.id;
  }
}

/** A small, seedable generator (mulberry32): the same seed gives the same jitter. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export class VirtualClock {
  #now = 0;
  #seq = 0;
  #nextId = 1;
  readonly #timers = new Map<number, FakeTimer>();
  /** Callbacks run so far; a run past `maxEvents` is a hot loop, itself a bug. */
  #events = 0;
  readonly #maxEvents: number;
  readonly #random: () => number;

  constructor(seed: number, maxEvents = 100_000) {
    this.#random = seededRandom(seed);
    this.#maxEvents = maxEvents;
  }

  get now(): number {
    return this.#now;
  }

  get events(): number {
    return this.#events;
  }

  install(): void {
    const g = globalThis as Record<string, unknown>;
    g.setTimeout = (fn: (...a: unknown[]) => void, ms?: number, ...args: unknown[]) =>
      this.#add(() => fn(...args), ms ?? 0, undefined);
    g.setInterval = (fn: (...a: unknown[]) => void, ms?: number, ...args: unknown[]) =>
      this.#add(() => fn(...args), ms ?? 0, Math.max(1, ms ?? 0));
    g.setImmediate = (fn: (...a: unknown[]) => void, ...args: unknown[]) =>
      this.#add(() => fn(...args), -1, undefined);
    g.clearTimeout = g.clearInterval = g.clearImmediate = (timer: unknown) => this.#clear(timer);
    Date.now = () => this.#now;
    Math.random = this.#random;
  }

  uninstall(): void {
    Object.assign(globalThis, {
      setTimeout: real.setTimeout,
      clearTimeout: real.clearTimeout,
      setInterval: real.setInterval,
      clearInterval: real.clearInterval,
      setImmediate: real.setImmediate,
      clearImmediate: real.clearImmediate,
    });
    Date.now = real.dateNow;
    Math.random = real.random;
    this.#timers.clear();
  }

  /** Runs every timer due up to `target` (in due order, then creation order), then sets the time. */
  async advanceTo(target: number, after?: () => void): Promise<void> {
    for (;;) {
      await settleMicrotasks();
      after?.();
      const next = this.#nextDue();
      if (next === undefined || next.due > target) break;
      if (++this.#events > this.#maxEvents) {
        throw new Error(`more than ${this.#maxEvents} timer callbacks by ${this.#now} ms: a hot loop`);
      }
      this.#now = Math.max(this.#now, next.due);
      if (next.interval === undefined) this.#timers.delete(next.id);
      else {
        next.due = this.#now + next.interval;
        next.seq = this.#seq++;
      }
      next.callback();
    }
    this.#now = Math.max(this.#now, target);
  }

  /** Time of the next timer, if any. */
  get nextDue(): number | undefined {
    return this.#nextDue()?.due;
  }

  #add(callback: () => void, ms: number, interval: number | undefined): FakeTimer {
    // Node runs a 0 ms timeout after 1 ms; an immediate (-1) runs at the current time.
    const delay = ms < 0 ? 0 : Math.max(1, Number.isFinite(ms) ? ms : 1);
    const timer = new FakeTimer(this.#nextId++, this.#now + delay, this.#seq++, callback, interval);
    this.#timers.set(timer.id, timer);
    return timer;
  }

  #clear(timer: unknown): void {
    if (timer instanceof FakeTimer) this.#timers.delete(timer.id);
    else if (typeof timer === 'number') this.#timers.delete(timer);
  }

  #nextDue(): FakeTimer | undefined {
    let best: FakeTimer | undefined;
    for (const timer of this.#timers.values()) {
      if (best === undefined || timer.due < best.due || (timer.due === best.due && timer.seq < best.seq)) {
        best = timer;
      }
    }
    return best;
  }
}
