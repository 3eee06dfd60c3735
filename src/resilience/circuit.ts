import { type BackoffPolicy, backoffDelay } from './backoff.ts';

/**
 * Shared view of the RPC endpoint's health, so that a failing PostgREST is probed by one call at
 * a time instead of by every held delivery at once.
 *
 *   CLOSED  calls go ahead. An endpoint fault opens the circuit at once; transient failures open
 *           it after `failureThreshold` of them in a row with no success in between.
 *   OPEN    intake is paused. After a backoff one waiting call is let through as the probe; if
 *           nothing is waiting (every held delivery was returned to the queue), `idleProbe`
 *           checks the endpoint without a message, or else (or when it cannot tell) intake is
 *           re-enabled so that the next delivery becomes the probe. A failed probe pauses intake again and doubles
 *           the backoff; a success closes the circuit.
 *   RAMP    closed, but the calls that waited are released gradually: one, then twice as many
 *           after each success (and at least every initial delay), so a thousand held
 *           deliveries do not hit a recovering endpoint at once (in batch mode that made full
 *           batches that timed out again, each repeating its jobs). New callers queue behind.
 */

export interface CircuitOptions {
  readonly failureThreshold: number;
  readonly backoff: BackoffPolicy;
  /** Intake (consuming) should be on or off. */
  readonly onIntake: (allowed: boolean) => void;
  readonly onOpen: (reason: FailureKind) => void;
  readonly onClose: () => void;
  /**
   * Checks the endpoint without a message: true when it can take calls, false when it cannot,
   * undefined when it cannot tell (then the next delivery is the probe, as without one).
   */
  readonly idleProbe?: (() => Promise<boolean | undefined>) | undefined;
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
  /** While ramping: how many waiters the next success releases. */
  #window = 0;
  #rampTimer: NodeJS.Timeout | undefined;
  #closed = false;

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
    if (!this.#open && this.#waiters.length === 0) return Promise.resolve(true);
    if (signal.aborted || this.#closed) return Promise.resolve(false);
    if (this.#open && this.#probeDue && !this.#probeInFlight) {
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

  /** Whether calls are waiting to be released after the circuit closed. */
  get ramping(): boolean {
    return !this.#open && this.#waiters.length > 0;
  }

  success(): void {
    this.#consecutiveFailures = 0;
    if (!this.#open) {
      if (this.#waiters.length > 0) {
        this.#window *= 2;
        this.#release(this.#window);
      }
      return;
    }
    this.#open = false;
    this.#probeInFlight = false;
    this.#probeDue = false;
    this.#probeAttempt = 0;
    clearTimeout(this.#timer);
    this.#options.onClose();
    this.#options.onIntake(true);
    this.#window = 1;
    this.#release(1);
  }

  /** Lets `count` waiters go; while some remain, the next ones go at least every initial delay. */
  #release(count: number): void {
    for (let i = 0; i < count && !this.#open; i++) this.#waiters.shift()?.grant(true);
    clearTimeout(this.#rampTimer);
    this.#rampTimer = undefined;
    if (this.#open || this.#waiters.length === 0) return;
    this.#rampTimer = setTimeout(
      () => this.#release(Math.max(1, this.#window)),
      this.#options.backoff.initialDelayMs,
    );
    this.#rampTimer.unref();
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

  /** A call that was granted but not made (its delivery went away): let the next one go. */
  abandon(): void {
    if (this.ramping) {
      this.#release(1);
      return;
    }
    if (!this.#probeInFlight) return;
    this.#probeInFlight = false;
    this.#probeDue = true;
    this.#grantProbe();
  }

  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
    clearTimeout(this.#rampTimer);
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
    } else if (this.#options.idleProbe !== undefined) {
      // Nothing is held: without a probe of its own the circuit would stay open on an idle queue.
      this.#startProbe();
      const generation = this.#generation;
      this.#options.idleProbe().then(
        (ok) => this.#afterIdleProbe(ok, generation),
        () => this.#afterIdleProbe(false, generation),
      );
    } else {
      this.#options.onIntake(true);
    }
  }

  #afterIdleProbe(ok: boolean | undefined, generation: number): void {
    if (this.#closed || !this.#open || generation !== this.#generation) return;
    if (ok === true) this.success();
    else if (ok === false) this.failure('endpoint_fault', generation);
    else {
      this.#probeInFlight = false;
      this.#probeDue = true;
      this.#options.onIntake(true);
    }
  }

  #startProbe(): void {
    this.#probeDue = false;
    this.#probeInFlight = true;
  }
}
