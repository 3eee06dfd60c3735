import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import { READY_KINDS, type ReadyKind } from './readiness.ts';

/**
 * Every metric the bridge exports, in one place. A registry per bridge instance (not prom-client's
 * global one) so several bridges can live in one process, as they do in tests.
 */

type Labels<L extends string> = Readonly<Record<L, string>>;

/**
 * One label set of a counter, for the paths every message takes: counted in a plain number and
 * handed to prom-client when the registry is read. prom-client builds a key string from the
 * labels on every call, which at tens of thousands of messages a second is garbage.
 */
export class Tally<L extends string> {
  readonly labels: Labels<L>;
  #pending = 0;

  constructor(labels: Labels<L>) {
    this.labels = labels;
  }

  inc(): void {
    this.#pending++;
  }

  /** The count since the last call. */
  take(): number {
    const pending = this.#pending;
    this.#pending = 0;
    return pending;
  }
}

/** A counter whose every label must be given. */
class TypedCounter<L extends string> {
  readonly #counter: Counter<L>;
  readonly #tallies: Tally<L>[] = [];

  constructor(registry: Registry, name: string, help: string, labelNames: readonly L[]) {
    const tallies = this.#tallies;
    this.#counter = new Counter({
      name,
      help,
      labelNames,
      registers: [registry],
      // Hands the tallies' counts over before the counter is read.
      collect() {
        for (const tally of tallies) {
          const change = tally.take();
          if (change !== 0) this.inc(tally.labels, change);
        }
      },
    });
  }

  inc(labels: Labels<L>, value = 1): void {
    this.#counter.inc(labels, value);
  }

  /** A handle on one label set, for paths that every message takes. */
  tally(labels: Labels<L>): Tally<L> {
    const tally = new Tally(labels);
    this.#tallies.push(tally);
    return tally;
  }
}

export class Metrics {
  readonly registry = new Registry();
  #inFlight: () => Iterable<readonly [string, number]> = () => [];
  readonly deliveries = new TypedCounter(
    this.registry,
    'pgq_bridge_deliveries_total',
    'Deliveries received',
    ['queue'],
  );
  readonly enqueued = new TypedCounter(this.registry, 'pgq_bridge_enqueued_total', 'Jobs enqueued (acked)', [
    'queue',
  ]);
  readonly duplicates = new TypedCounter(
    this.registry,
    'pgq_bridge_duplicates_total',
    'Deliveries acked because their dedupe key was already queued or picked',
    ['queue'],
  );
  readonly replayed = new TypedCounter(
    this.registry,
    'pgq_bridge_replayed_total',
    'Deliveries acked because the idempotency ledger knew their message id (no new job)',
    ['queue'],
  );
  readonly deadLettered = new TypedCounter(
    this.registry,
    'pgq_bridge_dead_lettered_total',
    'Deliveries dead-lettered, by error kind and reason',
    ['queue', 'kind', 'reason'],
  );
  readonly retries = new TypedCounter(
    this.registry,
    'pgq_bridge_retries_total',
    'Retries of a held delivery',
    ['queue', 'kind'],
  );
  readonly ambiguousRetries = new TypedCounter(
    this.registry,
    'pgq_bridge_ambiguous_retries_total',
    'Retries after the request was sent but no answer came (the job may exist)',
    ['queue'],
  );
  readonly requeued = new TypedCounter(
    this.registry,
    'pgq_bridge_requeued_total',
    'Deliveries handed back to the queue, by why: held_too_long (before the consumer timeout), repeated_failure, internal_error, memory',
    ['queue', 'why'],
  );
  readonly internalErrors = new TypedCounter(
    this.registry,
    'pgq_bridge_internal_errors_total',
    'Unexpected errors in the delivery path (a bug); the delivery is handed back, and readiness fails until a call succeeds',
    ['queue'],
  );
  readonly replyFailures = new TypedCounter(
    this.registry,
    'pgq_bridge_reply_failures_total',
    'Replies that could not be delivered (the message was acked anyway: its job exists), by publish failure kind',
    ['queue', 'kind'],
  );
  readonly publishFailures = new TypedCounter(
    this.registry,
    'pgq_bridge_publish_failures_total',
    'Dead-letter and reply publishes not routed and confirmed, by kind (returned, nacked, timeout, blocked, unavailable, too_large)',
    ['kind'],
  );
  readonly droppedHeaders = new TypedCounter(
    this.registry,
    'pgq_bridge_dead_letter_dropped_headers_total',
    'Dead letters whose original headers had to be dropped to fit the frame limit',
    ['queue'],
  );
  readonly replies = new TypedCounter(
    this.registry,
    'pgq_bridge_replies_total',
    'Outcomes published to a message reply_to, by status',
    ['queue', 'status'],
  );
  readonly reconnects = new TypedCounter(this.registry, 'pgq_bridge_reconnects_total', 'Broker reconnects', [
    'connection',
  ]);
  readonly failovers = new TypedCounter(
    this.registry,
    'pgq_bridge_broker_failovers_total',
    'Moves of a broker connection from one cluster node to the next, after a failed connect or a lost connection',
    ['connection', 'from', 'to'],
  );
  readonly consumerCancels = new TypedCounter(
    this.registry,
    'pgq_bridge_consumer_cancels_total',
    'Consumers cancelled by the broker (queue deleted, consumer timeout)',
    ['queue'],
  );
  readonly rpcDuration = new Histogram({
    name: 'pgq_bridge_rpc_duration_seconds',
    help: 'PostgREST call latency by outcome',
    labelNames: ['outcome'] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  });
  /** Read from the pipeline when scraped: see readInFlightFrom. */
  readonly inFlight: Gauge<'queue'> = new Gauge({
    name: 'pgq_bridge_in_flight',
    help: 'Deliveries received and not yet settled',
    labelNames: ['queue'] as const,
    registers: [this.registry],
    collect: () => {
      for (const [queue, count] of this.#inFlight()) this.inFlight.set({ queue }, count);
    },
  });
  readonly paused = new Gauge({
    name: 'pgq_bridge_paused',
    help: '1 while intake is paused because the endpoint is failing',
    registers: [this.registry],
  });
  readonly ready = new Gauge({ name: 'pgq_bridge_ready', help: '1 when ready', registers: [this.registry] });
  readonly readyReason = new Gauge({
    name: 'pgq_bridge_ready_reason',
    help: '1 for the reason readiness has now (ready, broker_config, function_missing, ...), 0 for the others',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });
  readonly endpointReady = new Gauge({
    name: 'pgq_bridge_endpoint_ready',
    help: '1 when the last endpoint check found PostgREST able to take the calls (reachable, token accepted, functions listed)',
    registers: [this.registry],
  });
  readonly blocked = new Gauge({
    name: 'pgq_bridge_broker_blocked',
    help: '1 while the broker blocks the connection (memory or disk alarm)',
    labelNames: ['connection'] as const,
    registers: [this.registry],
  });
  readonly inFlightBytes: Gauge = new Gauge({
    name: 'pgq_bridge_in_flight_bytes',
    help: 'Bytes held by deliveries not yet settled: bodies, and decoded payloads and request bodies of those being called',
    registers: [this.registry],
    collect: (): void => this.inFlightBytes.set(this.#inFlightBytes()),
  });
  #inFlightBytes: () => number = () => 0;

  constructor(options: { readonly processMetrics?: boolean } = {}) {
    if (options.processMetrics ?? true)
      collectDefaultMetrics({ register: this.registry, prefix: 'pgq_bridge_' });
  }

  setReadiness(kind: ReadyKind, endpointReady: boolean): void {
    for (const reason of READY_KINDS) this.readyReason.set({ reason }, reason === kind ? 1 : 0);
    this.endpointReady.set(endpointReady ? 1 : 0);
  }

  /** Where the in-flight gauge gets its values: the count per queue, which the pipeline keeps anyway. */
  readInFlightFrom(read: () => Iterable<readonly [string, number]>, bytes: () => number): void {
    this.#inFlight = read;
    this.#inFlightBytes = bytes;
  }
}
