import type { SourceConfig } from '../config/config.ts';
import type { Metrics, Tally } from '../metrics.ts';
import { sleep } from '../resilience/sleep.ts';
import type { Delivery } from './delivery.ts';

/**
 * A source's deliveries: at most `limit` worked on at once, the rest waiting in arrival order,
 * and the bytes they hold (message bodies, and what `charge` adds for their calls). p-limit does the same with several promises and closures per call;
 * every delivery passes through here, up to a prefetch window of them at once, so a plain queue
 * keeps them light.
 */
interface Lane {
  readonly limit: number;
  running: number;
  readonly waiting: Delivery[];
  readonly deliveries: Tally<'queue'>;
}

export class Lanes {
  readonly #parallelism: (source: SourceConfig) => number;
  readonly #metrics: Metrics;
  readonly #work: (delivery: Delivery) => Promise<void>;
  readonly #lanes = new Map<string, Lane>();
  #active = 0;
  #bytes = 0;
  #idle: (() => void) | undefined;

  constructor(
    parallelism: (source: SourceConfig) => number,
    metrics: Metrics,
    work: (delivery: Delivery) => Promise<void>,
  ) {
    this.#parallelism = parallelism;
    this.#metrics = metrics;
    this.#work = work;
  }

  get active(): number {
    return this.#active;
  }

  get bytes(): number {
    return this.#bytes;
  }

  counts(): Iterable<readonly [string, number]> {
    return Array.from(this.#lanes, ([queue, lane]) => [queue, lane.running + lane.waiting.length] as const);
  }

  add(delivery: Delivery): void {
    const lane = this.#laneFor(delivery.source);
    lane.deliveries.inc();
    this.#active++;
    this.#bytes += delivery.body.length;
    if (lane.running < lane.limit) this.#start(lane, delivery);
    else lane.waiting.push(delivery);
  }

  /** Bytes a delivery holds beyond its body while it is worked on; `done` gives them back. */
  charge(bytes: number): void {
    this.#bytes += bytes;
  }

  /**
   * Called once per delivery when its work is over, with what was charged for it; starts the
   * next one waiting.
   */
  done(delivery: Delivery, charged: number): void {
    this.#active--;
    this.#bytes -= delivery.body.length + charged;
    const lane = this.#laneFor(delivery.source);
    lane.running--;
    const next = lane.waiting.shift();
    if (next !== undefined) this.#start(lane, next);
    else if (this.#idle !== undefined && this.#active === 0) this.#idle();
  }

  /** Resolves once nothing is active, or after `ms`. */
  async idle(ms: number): Promise<void> {
    if (this.#active === 0) return;
    // Ends the wait (and its timer, which would otherwise keep the process alive) once idle.
    const idle = new AbortController();
    this.#idle = () => idle.abort();
    await sleep(ms, idle.signal);
  }

  #start(lane: Lane, delivery: Delivery): void {
    lane.running++;
    void this.#work(delivery);
  }

  #laneFor(source: SourceConfig): Lane {
    let lane = this.#lanes.get(source.queue);
    if (lane === undefined) {
      lane = {
        limit: this.#parallelism(source),
        running: 0,
        waiting: [],
        deliveries: this.#metrics.deliveries.tally({ queue: source.queue }),
      };
      this.#lanes.set(source.queue, lane);
    }
    return lane;
  }
}
