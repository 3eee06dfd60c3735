import type { Logger } from 'pino';
import { toError } from '../errors.ts';
import { type BackoffPolicy, backoffDelay } from '../resilience/backoff.ts';
import type { ProbeReport, ProbeVerdict } from './probe.ts';

/**
 * Keeps a current verdict on the endpoint for readiness: probes at start, then every
 * `intervalMs` while it passes and with backoff while it fails, so a function dropped or a
 * token refused while the queue is idle shows before the next message finds it. Probes never
 * overlap: a check asked for while one runs gets that one's answer.
 */
export interface EndpointWatchOptions {
  readonly probe: () => Promise<ProbeReport>;
  readonly intervalMs: number;
  readonly backoff: BackoffPolicy;
  readonly logger: Logger;
  /** Told whenever the verdict's reason changes. */
  readonly onChange: (verdict: ProbeVerdict) => void;
}

export class EndpointWatch {
  readonly #options: EndpointWatchOptions;
  #verdict: ProbeVerdict | undefined;
  #running: Promise<ProbeVerdict> | undefined;
  #timer: NodeJS.Timeout | undefined;
  #failures = 0;
  #closed = false;

  constructor(options: EndpointWatchOptions) {
    this.#options = options;
  }

  /** The last verdict; undefined until the first probe has answered. */
  get verdict(): ProbeVerdict | undefined {
    return this.#verdict;
  }

  start(): void {
    void this.check();
  }

  check(): Promise<ProbeVerdict> {
    this.#running ??= this.#probe().finally(() => {
      this.#running = undefined;
    });
    return this.#running;
  }

  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
  }

  async #probe(): Promise<ProbeVerdict> {
    clearTimeout(this.#timer);
    let verdict: ProbeVerdict;
    try {
      ({ verdict } = await this.#options.probe());
    } catch (error) {
      verdict = {
        ok: false,
        kind: 'unreachable',
        reason: `the endpoint check failed: ${toError(error).message}`,
      };
    }
    if (this.#closed) return verdict;
    const changed = verdict.reason !== this.#verdict?.reason;
    this.#verdict = verdict;
    this.#failures = verdict.ok ? 0 : this.#failures + 1;
    if (changed) {
      const { logger } = this.#options;
      if (verdict.ok) logger.info({ reason: verdict.reason }, 'the RPC endpoint can take calls');
      else logger.warn({ reason: verdict.reason, kind: verdict.kind }, 'the RPC endpoint cannot take calls');
      this.#options.onChange(verdict);
    }
    const delay = verdict.ok
      ? this.#options.intervalMs
      : Math.max(
          this.#options.backoff.initialDelayMs,
          backoffDelay(this.#failures - 1, this.#options.backoff),
        );
    this.#timer = setTimeout(() => void this.check(), delay);
    this.#timer.unref();
    return verdict;
  }
}
