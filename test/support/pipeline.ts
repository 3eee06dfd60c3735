import assert from 'node:assert/strict';
import { setMaxListeners } from 'node:events';
import { pino } from 'pino';
import type { ConnectionSettings } from '../../src/amqp/connection.ts';
import { type Config, parseConfig, type SourceConfig } from '../../src/config/config.ts';
import type { EnqueueArgs } from '../../src/message/args.ts';
import { createPolicy } from '../../src/message/policy.ts';
import { Metrics } from '../../src/metrics.ts';
import type {
  DeadLetterReason,
  Delivery,
  MessageAttributes,
  PublishResult,
  ReplyBody,
  SettlePort,
} from '../../src/pipeline/delivery.ts';
import { Pipeline, type PipelineDeps } from '../../src/pipeline/pipeline.ts';
import type { RpcResult } from '../../src/postgrest/client.ts';
import { type Enqueuer, singleEnqueuer } from '../../src/postgrest/enqueuer.ts';
import { Circuit } from '../../src/resilience/circuit.ts';
import { waitFor } from './rabbit.ts';

/**
 * The pipeline without RabbitMQ or HTTP: deliveries that record how they were settled, a settle
 * port whose publishes the test decides, and endpoint calls the test answers.
 */

export const DEDUPE_CONSTRAINT = 'pgqueuer_unique_dedupe_key';

/** Connection settings for a consumer or publisher whose broker is a fake (or the local one). */
export function connectionSettings(overrides: Partial<ConnectionSettings> = {}): ConnectionSettings {
  return {
    urls: ['amqp://localhost'],
    startAt: 0,
    connectTimeoutMs: 5_000,
    heartbeatSeconds: 5,
    connectionName: 'test',
    reconnectInitialDelayMs: 10,
    reconnectMaxDelayMs: 10,
    ...overrides,
  };
}

/** A delivery that records its settlement; `lose()` is its channel closing. */
export class TestDelivery implements Delivery {
  readonly source: SourceConfig;
  readonly body: Buffer;
  readonly attributes: MessageAttributes;
  readonly origin;
  readonly receivedAt = Date.now();
  readonly #lost = new AbortController();
  settled: 'ack' | 'requeue' | undefined;
  /** Every ack() or requeue() call, including refused ones. */
  readonly calls: ('ack' | 'requeue')[] = [];

  constructor(
    source: SourceConfig,
    body: unknown,
    tag: number,
    options: { attributes?: MessageAttributes; priorDeliveries?: number; redelivered?: boolean } = {},
  ) {
    this.source = source;
    this.body = Buffer.isBuffer(body) ? body : Buffer.from(JSON.stringify(body));
    this.attributes = { contentType: 'application/json', headers: {}, ...options.attributes };
    const priorDeliveries = options.priorDeliveries ?? 0;
    this.origin = {
      exchange: '',
      routingKey: source.queue,
      redelivered: options.redelivered ?? priorDeliveries > 0,
      priorDeliveries,
      tag,
    };
    setMaxListeners(0, this.#lost.signal);
  }

  get live(): boolean {
    return this.settled === undefined && !this.#lost.signal.aborted;
  }

  get lost(): AbortSignal {
    return this.#lost.signal;
  }

  ack(): boolean {
    return this.#settle('ack');
  }

  requeue(): boolean {
    return this.#settle('requeue');
  }

  lose(): void {
    this.#lost.abort();
  }

  #settle(how: 'ack' | 'requeue'): boolean {
    this.calls.push(how);
    if (!this.live) return false;
    this.settled = how;
    return true;
  }
}

export const ROUTED: PublishResult = { ok: true };

/** Publishes answered from a script (then `ROUTED`), recorded in order. */
export class ScriptedPort implements SettlePort {
  readonly deadLetters: { delivery: Delivery; reason: DeadLetterReason }[] = [];
  readonly replies: { delivery: Delivery; body: ReplyBody; jobId: string | undefined }[] = [];
  deadLetterAnswers: PublishResult[] = [];
  replyAnswers: PublishResult[] = [];

  async deadLetter(delivery: Delivery, reason: DeadLetterReason): Promise<PublishResult> {
    this.deadLetters.push({ delivery, reason });
    return this.deadLetterAnswers.shift() ?? ROUTED;
  }

  async reply(delivery: Delivery, body: ReplyBody, jobId?: string): Promise<PublishResult> {
    this.replies.push({ delivery, body, jobId });
    return this.replyAnswers.shift() ?? ROUTED;
  }
}

/** Endpoint calls that stay open until the test answers them. */
export class HeldCalls {
  readonly open: { readonly args: EnqueueArgs; readonly answer: (result: RpcResult) => void }[] = [];
  readonly started: string[] = [];
  mostAtOnce = 0;
  #nextId = 1;

  readonly call = (args: EnqueueArgs): Promise<RpcResult> => {
    this.started.push(args.entrypoint);
    return new Promise((resolve) => {
      this.open.push({ args, answer: resolve });
      this.mostAtOnce = Math.max(this.mostAtOnce, this.open.length);
    });
  };

  /** Answers the oldest open call (with a new job id unless told otherwise). */
  answerOldest(result?: RpcResult): void {
    const call = this.open.shift();
    assert.ok(call, 'no call is open');
    call.answer(result ?? { kind: 'enqueued', jobId: String(this.#nextId++) });
  }
}

export function testConfig(overrides: Record<string, unknown> = {}): Config {
  return parseConfig({
    amqp: { url: 'amqp://localhost' },
    postgrest: { url: 'http://localhost:3000' },
    sources: [
      { queue: 'a', concurrency: 3 },
      { queue: 'b', concurrency: 1 },
      { queue: 'c', concurrency: 20 },
    ],
    ...overrides,
  });
}

export interface Harness {
  readonly pipeline: Pipeline;
  readonly metrics: Metrics;
  readonly port: ScriptedPort;
  readonly circuit: Circuit;
  readonly config: Config;
  /** Hands a new delivery of `body` to the pipeline. */
  deliver(
    source: SourceConfig,
    body: unknown,
    options?: ConstructorParameters<typeof TestDelivery>[3],
  ): TestDelivery;
  readonly health: { changes: number };
  readonly memory: boolean[];
}

export interface HarnessOptions {
  readonly config?: Config;
  /** The endpoint, as the single-call enqueuer sees it. */
  readonly call?: (args: EnqueueArgs) => Promise<RpcResult>;
  readonly enqueuer?: Enqueuer;
  readonly deps?: Partial<PipelineDeps>;
}

export function harness(options: HarnessOptions = {}): Harness {
  const config = options.config ?? testConfig();
  const metrics = new Metrics({ processMetrics: false });
  const port = new ScriptedPort();
  const circuit = new Circuit({
    failureThreshold: 5,
    backoff: config.retry,
    onIntake: () => {},
    onOpen: () => {},
    onClose: () => {},
  });
  const enqueuer =
    options.enqueuer ??
    singleEnqueuer(options.call ?? (async () => assert.fail('no endpoint in this test')), DEDUPE_CONSTRAINT);
  const health = { changes: 0 };
  const memory: boolean[] = [];
  const pipeline = new Pipeline({
    enqueuer: () => enqueuer,
    parallelism: (source) => source.concurrency,
    settle: port,
    circuit,
    metrics,
    logger: pino({ level: 'silent' }),
    retry: config.retry,
    policy: createPolicy(config.policy),
    maxInFlightBytes: config.intake.maxInFlightBytes,
    onMemoryPressure: (over) => memory.push(over),
    onHealthChange: () => health.changes++,
    ...options.deps,
  });
  let tag = 0;
  const deliver: Harness['deliver'] = (source, body, deliveryOptions) => {
    const delivery = new TestDelivery(source, body, ++tag, deliveryOptions);
    pipeline.handle(delivery);
    return delivery;
  };
  return { pipeline, metrics, port, circuit, config, deliver, health, memory };
}

/** Lets promise callbacks run until the pipeline has nothing more to do without an answer. */
export async function settle(): Promise<void> {
  await new Promise((resolve) => setImmediate(resolve));
}

/** Polls `done()` every 2 ms (these tests have no broker to wait for); fails after `ms`. */
export async function until(done: () => boolean, ms = 5_000): Promise<void> {
  await waitFor(done, { timeoutMs: ms, intervalMs: 2 });
}

export async function metricValue(
  metrics: Metrics,
  name: string,
  labels: Readonly<Record<string, string>>,
): Promise<number | undefined> {
  const metric = await metrics.registry.getSingleMetric(name)?.get();
  return metric?.values.find((v) => Object.entries(labels).every(([k, value]) => v.labels[k] === value))
    ?.value;
}
