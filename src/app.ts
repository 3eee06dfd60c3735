import { readFileSync } from 'node:fs';
import type { Logger } from 'pino';
import { ackHoldFor } from './amqp/acks.ts';
import type { ConnectFn, ConnectionSettings } from './amqp/connection.ts';
import { AmqpConsumer, type PauseReason } from './amqp/consumer.ts';
import { ConfirmPublisher } from './amqp/publisher.ts';
import { AmqpSettlePort } from './amqp/settle-port.ts';
import type { Config } from './config/config.ts';
import { onceFunctions } from './config/idempotency.ts';
import { ConfigError, toError } from './errors.ts';
import { type HttpEndpoint, startHttp } from './http.ts';
import type { EnqueueArgs } from './message/decode.ts';
import { createPolicy } from './message/policy.ts';
import { Metrics } from './metrics.ts';
import { Pipeline } from './pipeline/pipeline.ts';
import { createTokenSource, type TokenSource, withTokenRefresh } from './postgrest/auth.ts';
import { Batcher } from './postgrest/batcher.ts';
import { RpcClient } from './postgrest/client.ts';
import { type Enqueuer, singleEnqueuer } from './postgrest/enqueuer.ts';
import { LedgerMaintenance } from './postgrest/ledger-maintenance.ts';
import { Circuit } from './resilience/circuit.ts';
import { RateLimiter } from './resilience/rate-limit.ts';

/**
 * The composition root: builds every part from the config and owns their lifecycle.
 *
 * start(): publisher and consumer connect in the background (a broker that is down at start is
 * retried, not fatal); the health endpoint answers at once and reports not-ready until consuming.
 *
 * stop(): idempotent. Stop intake → drain in-flight deliveries (up to shutdown.graceMs) → close
 * channels and connections (unfinished deliveries return to their queues) → close the rest.
 */

export interface AppOverrides {
  /** Replaces amqplib's connect (fault injection in tests). */
  readonly connect?: ConnectFn;
  /** Replaces the PostgREST client (single mode). */
  readonly rpc?: { enqueue: RpcClient['enqueue']; close?: () => void };
  /** Skip default process metrics (several apps in one test process). */
  readonly processMetrics?: boolean;
}

/** Consecutive transient failures (no success between) that pause intake. */
const PAUSE_AFTER_FAILURES = 5;

/** Reads a PEM file named in the config; a failure names the key. */
function readPem(path: string | undefined, key: string): Buffer | undefined {
  if (path === undefined) return undefined;
  try {
    return readFileSync(path);
  } catch (error) {
    throw new ConfigError([`${key}: cannot read ${path}: ${toError(error).message}`]);
  }
}

function amqpSocketOptions(tls: Config['amqp']['tls']): Record<string, unknown> {
  if (tls === undefined) return {};
  const options: Record<string, unknown> = {};
  const ca = readPem(tls.caFile, 'amqp.tls.caFile');
  const cert = readPem(tls.certFile, 'amqp.tls.certFile');
  const key = readPem(tls.keyFile, 'amqp.tls.keyFile');
  if (ca !== undefined) options.ca = [ca];
  if (cert !== undefined) options.cert = cert;
  if (key !== undefined) options.key = key;
  if (tls.passphrase !== undefined) options.passphrase = tls.passphrase;
  if (tls.servername !== undefined) options.servername = tls.servername;
  return options;
}

export class App {
  readonly config: Config;
  readonly metrics: Metrics;
  readonly #logger: Logger;
  readonly #rpc: { enqueue: RpcClient['enqueue']; close?: () => void };
  readonly #publisher: ConfirmPublisher;
  readonly #consumer: AmqpConsumer;
  readonly #circuit: Circuit;
  readonly #pipeline: Pipeline;
  #http: HttpEndpoint | undefined;
  readonly #ledgerMaintenance: LedgerMaintenance | undefined;
  #tokens: TokenSource | undefined;
  #stopping: Promise<number> | undefined;
  #wasReady = false;

  constructor(config: Config, logger: Logger, overrides: AppOverrides = {}) {
    this.config = config;
    this.#logger = logger;
    this.metrics = new Metrics({ processMetrics: overrides.processMetrics ?? true });
    const totalConcurrency = config.sources.reduce((sum, s) => sum + s.concurrency, 0);
    // A batch is split in halves when PostgreSQL refuses one element; the halves run at once.
    const sockets = config.batch.enabled ? totalConcurrency * 2 : totalConcurrency;
    this.#rpc =
      overrides.rpc ??
      new RpcClient({
        url: config.postgrest.url,
        function: config.postgrest.function,
        schema: config.postgrest.schema,
        timeoutMs: config.postgrest.timeoutMs,
        bearerToken: () => this.#tokens?.token(),
        maxSockets: sockets,
        ca: readPem(config.postgrest.caFile, 'postgrest.caFile'),
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
      socketOptions: amqpSocketOptions(config.amqp.tls),
    };
    this.#publisher = new ConfirmPublisher(
      { ...settings, confirmTimeoutMs: config.amqp.confirmTimeoutMs },
      logger,
      overrides.connect,
      {
        onBlocked: (blocked) => {
          this.metrics.blocked.set({ connection: 'publisher' }, blocked ? 1 : 0);
          this.#updateReady();
        },
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
        onConsumerCancelled: (queue) => this.metrics.consumerCancels.inc({ queue }),
        onStateChange: () => this.#updateReady(),
      },
      logger,
      {
        ackHold: (source) => ackHoldFor(source, config.batch.enabled),
        connect: overrides.connect,
      },
    );
    this.#circuit = new Circuit({
      failureThreshold: PAUSE_AFTER_FAILURES,
      backoff: config.retry,
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
        if (!config.batch.enabled || !(rpc instanceof RpcClient)) return [source.queue, single];
        const once = source.idempotency !== undefined;
        const post = withTokenRefresh((bodies: readonly string[]) => rpc.postBatch(bodies, once), tokens);
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
    return (
      this.#stopping === undefined &&
      this.#consumer.consuming &&
      !this.#circuit.isOpen &&
      !this.#pipeline.faulty &&
      !this.#publisher.blocked
    );
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
    return {
      consuming: this.#consumer.consuming,
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
    const steps: Array<[string, () => Promise<unknown> | unknown]> = [];
    let unfinished = 0;
    steps.push(['stop intake', () => this.#consumer.stopIntake()]);
    steps.push([
      'drain',
      async () => {
        unfinished = await this.#pipeline.drain(this.config.shutdown.graceMs);
      },
    ]);
    steps.push(['close circuit', () => this.#circuit.close()]);
    steps.push(['close consumer', () => this.#consumer.close()]);
    steps.push(['close publisher', () => this.#publisher.close()]);
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
    if (ready === this.#wasReady) return;
    this.#wasReady = ready;
    this.#logger.info({ ready, ...this.status() }, ready ? 'ready' : 'not ready');
  }
}
