import { hostname } from 'node:os';
import type { Logger } from 'pino';
import { ackHoldFor } from './amqp/acks.ts';
import type { ConnectFn, ConnectionSettings } from './amqp/connection.ts';
import { AmqpConsumer, type PauseReason } from './amqp/consumer.ts';
import type { BrokerFault } from './amqp/faults.ts';
import { type NodeMove, startIndex } from './amqp/nodes.ts';
import { ConfirmPublisher } from './amqp/publisher.ts';
import { AmqpSettlePort } from './amqp/settle-port.ts';
import { amqpSocketOptions } from './amqp/tls.ts';
import type { Config } from './config/config.ts';
import { readConfiguredFile } from './config/files.ts';
import { onceFunctions } from './config/idempotency.ts';
import { toError } from './errors.ts';
import { type HttpEndpoint, startHttp } from './http.ts';
import type { EnqueueArgs } from './message/decode.ts';
import { createPolicy } from './message/policy.ts';
import { Metrics } from './metrics.ts';
import { Pipeline } from './pipeline/pipeline.ts';
import { createTokenSource, type TokenSource, withTokenRefresh } from './postgrest/auth.ts';
import { Batcher } from './postgrest/batcher.ts';
import { RpcClient, rpcSocketBudget } from './postgrest/client.ts';
import { type Enqueuer, singleEnqueuer } from './postgrest/enqueuer.ts';
import { LedgerMaintenance } from './postgrest/ledger-maintenance.ts';
import { expectedFunctions, type ProbeReport, probeEndpoint } from './postgrest/probe.ts';
import { EndpointWatch } from './postgrest/watch.ts';
import { type Readiness, readiness } from './readiness.ts';
import { Circuit } from './resilience/circuit.ts';
import { within } from './resilience/deadline.ts';
import { RateLimiter } from './resilience/rate-limit.ts';

/**
 * The composition root: builds every part from the config and owns their lifecycle.
 *
 * start(): publisher and consumer connect in the background (a broker that is down at start is
 * retried, not fatal); the health endpoint answers at once and reports not-ready until consuming
 * and until the endpoint probe (postgrest/probe.ts) shows that PostgREST can take the calls. A
 * configuration fault of the broker before the first ready settles `startupFault` (exit 78);
 * after it, it is retried and named in the readiness reason.
 *
 * stop(): idempotent, done within shutdown.graceMs. Stop intake → drain in-flight deliveries →
 * close channels and connections in what is left of the grace (unfinished deliveries return to
 * their queues; a broker that does not confirm the close has its socket destroyed) → the rest.
 */

export interface AppOverrides {
  /** Replaces amqplib's connect (fault injection in tests). */
  readonly connect?: ConnectFn;
  /**
   * Replaces the PostgREST client. Batch mode needs `postBatch`; without it every call is single.
   * (The model test drives the batcher against a simulated endpoint through it.)
   */
  readonly rpc?: RpcCalls;
  /** Replaces the endpoint probe (postgrest/probe.ts), for tests without an HTTP endpoint. */
  readonly probe?: () => Promise<ProbeReport>;
  /** Skip default process metrics (several apps in one test process). */
  readonly processMetrics?: boolean;
}

type RpcCalls = {
  enqueue: RpcClient['enqueue'];
  postBatch?: RpcClient['postBatch'];
  close?: () => void;
};

/** Consecutive transient failures (no success between) that pause intake. */
const PAUSE_AFTER_FAILURES = 5;

export class App {
  readonly config: Config;
  readonly metrics: Metrics;
  readonly #logger: Logger;
  readonly #rpc: RpcCalls;
  readonly #publisher: ConfirmPublisher;
  readonly #consumer: AmqpConsumer;
  readonly #circuit: Circuit;
  readonly #pipeline: Pipeline;
  #http: HttpEndpoint | undefined;
  readonly #ledgerMaintenance: LedgerMaintenance | undefined;
  #tokens: TokenSource | undefined;
  #stopping: Promise<number> | undefined;
  #wasReady = false;
  #everReady = false;
  readonly #watch: EndpointWatch;
  readonly #brokerFaults = new Map<string, BrokerFault>();
  #reportStartupFault: (line: string) => void = () => undefined;
  /** Settles with one line naming the key when the broker refuses the config before the first ready. */
  readonly startupFault = new Promise<string>((resolve) => {
    this.#reportStartupFault = resolve;
  });

  constructor(config: Config, logger: Logger, overrides: AppOverrides = {}) {
    this.config = config;
    this.#logger = logger;
    this.metrics = new Metrics({ processMetrics: overrides.processMetrics ?? true });
    const endpointCa = readConfiguredFile(config.postgrest.caFile, 'postgrest.caFile');
    this.#rpc =
      overrides.rpc ??
      new RpcClient({
        url: config.postgrest.url,
        function: config.postgrest.function,
        schema: config.postgrest.schema,
        timeoutMs: config.postgrest.timeoutMs,
        bearerToken: () => this.#tokens?.token(),
        maxSockets: rpcSocketBudget(config),
        ca: endpointCa,
        batchFunction: config.batch.enabled ? config.batch.function : undefined,
        batchTimeoutMs: config.batch.timeoutMs,
        ...onceFunctions(config),
      });
    const { maintenanceIntervalMs, table } = config.ledger;
    this.#ledgerMaintenance =
      maintenanceIntervalMs === undefined || !(this.#rpc instanceof RpcClient)
        ? undefined
        : new LedgerMaintenance(this.#rpc, { table, intervalMs: maintenanceIntervalMs }, logger);
    const settings: ConnectionSettings = {
      ...config.amqp,
      urls: config.amqp.nodes,
      // Replicas on different hosts (or several on one) start on different nodes of a cluster.
      startAt: startIndex(`${hostname()}/${process.pid}`, config.amqp.nodes.length),
      socketOptions: amqpSocketOptions(config.amqp.tls),
    };
    const failover =
      (connection: string) =>
      (move: NodeMove): void =>
        this.metrics.failovers.inc({ connection, from: move.from.address, to: move.to.address });
    this.#publisher = new ConfirmPublisher(
      { ...settings, confirmTimeoutMs: config.amqp.confirmTimeoutMs },
      logger,
      overrides.connect,
      {
        onBlocked: (blocked) => {
          this.metrics.blocked.set({ connection: 'publisher' }, blocked ? 1 : 0);
          this.#updateReady();
        },
        onFailover: failover('publisher'),
        onFault: (fault) => this.#onBrokerFault('publisher connection', fault),
      },
    );
    this.#consumer = new AmqpConsumer(
      settings,
      config.sources,
      {
        onDelivery: (delivery) => this.#pipeline.handle(delivery),
        onReconnected: () => {
          this.metrics.reconnects.inc({ connection: 'consumer' });
          this.#logger.info('reconnected to the broker');
        },
        onFailover: failover('consumer'),
        onConsumerCancelled: (queue) => this.metrics.consumerCancels.inc({ queue }),
        onStateChange: () => this.#updateReady(),
        onFault: (scope, fault) => this.#onBrokerFault(scope, fault),
      },
      logger,
      {
        ackHold: (source) => ackHoldFor(source, config.batch.enabled),
        connect: overrides.connect,
      },
    );
    this.#watch = new EndpointWatch({
      probe:
        overrides.probe ??
        (() =>
          probeEndpoint({
            url: config.postgrest.url,
            schema: config.postgrest.schema,
            timeoutMs: config.postgrest.timeoutMs,
            ca: endpointCa,
            token: this.#tokens?.token(),
            functions: expectedFunctions(config),
          })),
      intervalMs: config.postgrest.probeIntervalMs,
      backoff: config.retry,
      logger,
      onChange: (verdict) => {
        // A fault no call can get past: pause intake now rather than after a delivery finds it.
        if (!verdict.ok && verdict.kind !== 'unreachable' && !this.#circuit.isOpen)
          this.#circuit.failure('endpoint_fault');
        this.#updateReady();
      },
    });
    this.#circuit = new Circuit({
      failureThreshold: PAUSE_AFTER_FAILURES,
      backoff: config.retry,
      idleProbe: async () => {
        const verdict = await this.#watch.check();
        return verdict.ok ? (verdict.verified ? true : undefined) : false;
      },
      onIntake: (allowed) => this.#pauseIntake('circuit', !allowed),
      onOpen: (reason) => {
        this.metrics.paused.set(1);
        this.#logger.error(
          { reason, endpoint: config.postgrest.url },
          'the RPC endpoint is failing; intake paused, probing with backoff (nothing is acked or dead-lettered meanwhile)',
        );
        this.#updateReady();
      },
      onClose: () => {
        this.metrics.paused.set(0);
        void this.#watch.check();
        this.#logger.info(
          { endpoint: config.postgrest.url },
          'the RPC endpoint answers again; intake resumed',
        );
        this.#updateReady();
      },
    });
    const tokens: TokenSource = {
      token: () => this.#tokens?.token(),
      refresh: async () => this.#tokens?.refresh(),
      close: () => undefined,
    };
    const rpc = this.#rpc;
    const single = singleEnqueuer(
      withTokenRefresh((args: EnqueueArgs) => rpc.enqueue(args), tokens),
      config.postgrest.dedupeConstraint,
    );
    const enqueuers = new Map<string, Enqueuer>(
      config.sources.map((source) => {
        const postBatch = rpc.postBatch;
        if (!config.batch.enabled || postBatch === undefined) return [source.queue, single];
        const once = source.idempotency !== undefined;
        const post = withTokenRefresh((body: Buffer) => postBatch.call(rpc, body, once), tokens);
        const batcher = new Batcher(
          { postBatch: post },
          { ...config.batch, concurrency: source.concurrency },
        );
        return [source.queue, batcher];
      }),
    );
    this.#pipeline = new Pipeline({
      enqueuer: (source) => enqueuers.get(source.queue) ?? single,
      parallelism: (source) => (config.batch.enabled ? source.prefetch : source.concurrency),
      settle: new AmqpSettlePort(this.#publisher, this.metrics, logger),
      maxInFlightBytes: config.intake.maxInFlightBytes,
      onHealthChange: () => this.#updateReady(),
      onMemoryPressure: (over) => {
        if (over)
          logger.warn(
            { limit: config.intake.maxInFlightBytes },
            'in-flight bytes over the limit; intake paused',
          );
        else logger.info('in-flight bytes back under the limit; intake resumed');
        this.#pauseIntake('memory', over);
      },
      circuit: this.#circuit,
      metrics: this.metrics,
      logger,
      retry: config.retry,
      policy: createPolicy(config.policy),
      rateLimiter:
        config.policy.maxJobsPerSecond === undefined
          ? undefined
          : new RateLimiter(config.policy.maxJobsPerSecond),
    });
  }

  get ready(): boolean {
    return this.#readiness().ready;
  }

  #readiness(): Readiness {
    return readiness({
      stopping: this.#stopping !== undefined,
      consuming: this.#consumer.consuming,
      intakePaused: this.#consumer.paused,
      brokerFaults: [...this.#brokerFaults.values()],
      brokerBlocked: this.#publisher.blocked,
      endpoint: this.#watch.verdict,
      endpointFailing: this.#circuit.isOpen ? 'calls fail' : undefined,
      internalErrors: this.#pipeline.faulty,
    });
  }

  #onBrokerFault(scope: string, fault: BrokerFault | undefined): void {
    if (fault === undefined) this.#brokerFaults.delete(scope);
    else this.#brokerFaults.set(scope, fault);
    if (fault?.config === true && !this.#everReady)
      this.#reportStartupFault(`${fault.key}: ${fault.message}`);
    this.#updateReady();
  }

  #pauseIntake(reason: PauseReason, paused: boolean): void {
    if (this.#stopping !== undefined) return;
    this.#consumer
      .setPaused(reason, paused)
      .catch((error: unknown) => this.#logger.error({ err: toError(error) }, 'changing intake failed'));
  }

  get httpPort(): number | undefined {
    return this.#http?.port;
  }

  status(): Record<string, unknown> {
    const { reason } = this.#readiness();
    const endpoint = this.#watch.verdict;
    return {
      reason,
      endpointReady: endpoint?.ok === true,
      endpointVerified: endpoint?.ok === true && endpoint.verified,
      consuming: this.#consumer.consuming,
      brokerNode: this.#consumer.node?.address ?? null,
      deadLetterPublisherNode: this.#publisher.node?.address ?? null,
      endpointFailing: this.#circuit.isOpen,
      intakePaused: this.#consumer.paused,
      intakePausedFor: this.#consumer.pausedFor,
      deadLetterPublisherConnected: this.#publisher.ready,
      brokerBlocked: this.#publisher.blocked,
      internalErrors: this.#pipeline.faulty,
      inFlight: this.#pipeline.active,
      stopping: this.#stopping !== undefined,
    };
  }

  async start(): Promise<void> {
    this.#tokens = await createTokenSource(this.config.postgrest, this.#logger);
    if (this.config.http.enabled) {
      this.#http = await startHttp(
        this.config.http.host,
        this.config.http.port,
        this,
        this.metrics.registry,
        this.#logger,
      );
    }
    this.#publisher.start();
    this.#consumer.start();
    this.#watch.start();
    this.#ledgerMaintenance?.start();
  }

  /** Resolves once consuming has started (for tests and the demo). */
  waitUntilConnected(): Promise<void> {
    return this.#consumer.waitUntilConnected();
  }

  /** Graceful stop; resolves with the number of deliveries left unfinished (returned to the broker). */
  stop(): Promise<number> {
    this.#stopping ??= this.#stop();
    return this.#stopping;
  }

  async #stop(): Promise<number> {
    this.#updateReady();
    const { graceMs } = this.config.shutdown;
    const deadline = Date.now() + graceMs;
    const left = (): number => Math.max(0, deadline - Date.now());
    // Closing gets a share of the grace: acks owed are flushed and the broker told.
    const closeReserveMs = Math.min(2000, graceMs / 4);
    const steps: Array<[string, () => Promise<unknown> | unknown]> = [];
    let unfinished = 0;
    steps.push(['stop intake', () => within(this.#consumer.stopIntake(), left())]);
    steps.push([
      'drain',
      async () => {
        unfinished = await this.#pipeline.drain(Math.max(0, left() - closeReserveMs));
      },
    ]);
    steps.push(['close circuit', () => this.#circuit.close()]);
    steps.push(['close endpoint watch', () => this.#watch.close()]);
    steps.push(['close consumer', () => this.#consumer.close(left())]);
    steps.push(['close publisher', () => this.#publisher.close(left())]);
    steps.push(['stop ledger maintenance', () => this.#ledgerMaintenance?.stop()]);
    steps.push(['close rpc client', () => this.#rpc.close?.()]);
    steps.push(['close token source', () => this.#tokens?.close()]);
    steps.push(['close http', () => this.#http?.close()]);
    // Each step runs even if an earlier one failed: a half-closed bridge must still let go of
    // its channels so the broker requeues what is unacked.
    for (const [name, step] of steps) {
      try {
        await step();
      } catch (error) {
        this.#logger.error({ err: toError(error), step: name }, 'shutdown step failed');
      }
    }
    this.#logger.info(
      { returnedToBroker: unfinished },
      `stopped; ${unfinished} unsettled deliveries returned to the broker`,
    );
    return unfinished;
  }

  #updateReady(): void {
    const ready = this.ready;
    this.metrics.ready.set(ready ? 1 : 0);
    this.metrics.setReadiness(this.#readiness().kind, this.#watch.verdict?.ok === true);
    if (ready) this.#everReady = true;
    if (ready === this.#wasReady) return;
    this.#wasReady = ready;
    this.#logger.info({ ready, ...this.status() }, ready ? 'ready' : 'not ready');
  }
}
