import { type BackoffPolicy, backoffDelay } from '../postgrest/classify.ts';

/**
 * Shared view of the RPC endpoint's health, so that a failing PostgREST is probed by one call at
 * a time instead of by every held delivery at once.
 *
 *   CLOSED  calls go ahead. An endpoint fault opens the circuit at once; transient failures open
 *           it after `failureThreshold` of them in a row with no success in between.
 *   OPEN    intake is paused. After a backoff one waiting call is let through as the probe; if
 *           nothing is waiting (every held delivery was returned to the queue), intake is
 *           re-enabled so that the next delivery becomes the probe. A failed probe pauses intake
 *           again and doubles the backoff; a success closes the circuit and releases everyone.
 */

export interface CircuitOptions {
  readonly failureThreshold: number;
  readonly backoff: BackoffPolicy;
  /** Intake (consuming) should be on or off. */
  readonly onIntake: (allowed: boolean) => void;
  readonly onOpen: (reason: FailureKind) => void;
  readonly onClose: () => void;
  readonly random?: () => number;
}

export type FailureKind = 'endpoint_fault' | 'transient';

interface Waiter {
  readonly grant: (allowed: boolean) => void;
}

export class Circuit {
  readonly #options: CircuitOptions;
  #open = false;
  /** Counts openings; a call remembers the value it started under (see failure()). */
  #generation = 0;
  #consecutiveFailures = 0;
  #probeAttempt = 0;
  #probeInFlight = false;
  /** The backoff has elapsed: the next caller may probe. */
  #probeDue = false;
  #timer: NodeJS.Timeout | undefined;
  #waiters: Waiter[] = [];

  constructor(options: CircuitOptions) {
    this.#options = options;
  }

  get isOpen(): boolean {
    return this.#open;
  }

  get generation(): number {
    return this.#generation;
  }

  /**
   * Resolves true when the caller may make a call: at once while closed, or when chosen as the
   * probe. Resolves false if the signal aborts first (shutdown, channel lost, hold expired).
   */
  permit(signal: AbortSignal): Promise<boolean> {
    if (!this.#open) return Promise.resolve(true);
    if (signal.aborted) return Promise.resolve(false);
    if (this.#probeDue && !this.#probeInFlight) {
      this.#startProbe();
      return Promise.resolve(true);
    }
    return new Promise<boolean>((resolve) => {
      const waiter: Waiter = {
        grant: (allowed) => {
          signal.removeEventListener('abort', onAbort);
          resolve(allowed);
        },
      };
      const onAbort = (): void => {
        this.#waiters = this.#waiters.filter((w) => w !== waiter);
        resolve(false);
      };
      signal.addEventListener('abort', onAbort, { once: true });
      this.#waiters.push(waiter);
    });
  }

  success(): void {
    this.#consecutiveFailures = 0;
    if (!this.#open) return;
    this.#open = false;
    this.#probeInFlight = false;
    this.#probeDue = false;
    this.#probeAttempt = 0;
    clearTimeout(this.#timer);
    const waiters = this.#waiters;
    this.#waiters = [];
    this.#options.onClose();
    this.#options.onIntake(true);
    for (const waiter of waiters) waiter.grant(true);
  }

  /**
   * `generation` is the value of `generation` when the failed call started. While open, only the
   * probe's failure moves the schedule: calls that started before the circuit opened (say, a
   * batch of timeouts arriving late) report failures too, and must not start a second probe.
   */
  failure(kind: FailureKind, generation: number = this.#generation): void {
    if (this.#open) {
      if (this.#probeInFlight && generation === this.#generation) {
        this.#probeInFlight = false;
        this.#options.onIntake(false);
        this.#scheduleProbe();
      }
      return;
    }
    this.#consecutiveFailures++;
    if (kind === 'endpoint_fault' || this.#consecutiveFailures >= this.#options.failureThreshold) {
      this.#open = true;
      this.#generation++;
      this.#options.onOpen(kind);
      this.#options.onIntake(false);
      this.#scheduleProbe();
    }
  }

  /** A probe that was granted but not made (its delivery went away): let the next one go. */
  abandon(): void {
    if (!this.#probeInFlight) return;
    this.#probeInFlight = false;
    this.#probeDue = true;
    this.#grantProbe();
  }

  close(): void {
    clearTimeout(this.#timer);
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const waiter of waiters) waiter.grant(false);
  }

  #scheduleProbe(): void {
    this.#probeDue = false;
    clearTimeout(this.#timer);
    // At least the initial delay, so a dead endpoint is not hammered when the jitter draws ~0.
    const delay = Math.max(
      this.#options.backoff.initialDelayMs,
      backoffDelay(this.#probeAttempt++, this.#options.backoff, this.#options.random),
    );
    this.#timer = setTimeout(() => {
      this.#probeDue = true;
      this.#grantProbe();
    }, delay);
    this.#timer.unref();
  }

  #grantProbe(): void {
    const waiter = this.#waiters.shift();
    if (waiter !== undefined) {
      this.#startProbe();
      waiter.grant(true);
    } else {
      this.#options.onIntake(true);
    }
  }

  #startProbe(): void {
    this.#probeDue = false;
    this.#probeInFlight = true;
  }
}
