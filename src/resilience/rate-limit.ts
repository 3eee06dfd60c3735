import { sleep } from './sleep.ts';

/**
 * Spaces calls to at most `perSecond`, allowing a burst of up to one second's worth after a
 * quiet spell. Each caller reserves its slot before waiting, so concurrent callers queue fairly.
 */
export class RateLimiter {
  readonly #intervalMs: number;
  readonly #now: () => number;
  #nextFree = Number.NEGATIVE_INFINITY;

  constructor(perSecond: number, now: () => number = Date.now) {
    this.#intervalMs = 1000 / perSecond;
    this.#now = now;
  }

  /** How long the caller must wait before its call; reserves the slot. */
  reserve(): number {
    const now = this.#now();
    const start = Math.max(this.#nextFree, now - 1000);
    this.#nextFree = start + this.#intervalMs;
    return Math.max(0, start - now);
  }

  async take(signal?: AbortSignal): Promise<void> {
    const wait = this.reserve();
    if (wait > 0) await sleep(wait, signal);
  }
}
