import { pino } from 'pino';
import { App } from '../../../src/app.ts';
import { type Config, parseConfig } from '../../../src/config/config.ts';
import { Broker, MODEL_ID } from './broker.ts';
import { VirtualClock } from './clock.ts';
import { Endpoint } from './endpoint.ts';
import { Ledger } from './ledger.ts';
import { type BrokerEvent, type ModelMessage, type Scenario, TIMEOUTS } from './scenario.ts';

/**
 * Runs one scenario against the real App (pipeline, circuit, batcher, consumer, ack coalescing,
 * publisher, settle port), wired to the simulated broker and endpoint, in virtual time.
 */

export interface RunResult {
  readonly scenario: Scenario;
  readonly config: Config;
  readonly ledger: Ledger;
  /** Every message acked before the deadline. */
  readonly drained: boolean;
  readonly endedAt: number;
  /** Longest a delivery may stay unsettled. */
  readonly holdLimitMs: number;
}

/** After healing, how long the bridge gets to drain everything. */
const DRAIN_BUDGET_MS = 120_000;
const STEP_MS = 50;
/** Far more than any run needs (a few per message): past it the run is looping. */
const MAX_DELIVERIES = 3000;

export function modelConfig(s: Scenario): Config {
  return parseConfig({
    amqp: {
      url: 'amqp://model',
      heartbeatSeconds: 0,
      reconnectInitialDelayMs: 50,
      reconnectMaxDelayMs: 1000,
      confirmTimeoutMs: TIMEOUTS.confirm,
    },
    postgrest: { url: 'http://model:3000', timeoutMs: TIMEOUTS.single },
    sources: s.sources.map((source, i) => ({
      queue: `q${i}`,
      concurrency: source.concurrency,
      prefetch: source.concurrency * (s.batch ? s.batchSize : 1) + source.spare,
      queueArguments: source.quorum ? { 'x-queue-type': 'quorum' } : {},
    })),
    retry: {
      initialDelayMs: s.initialDelayMs,
      maxDelayMs: 2000,
      maxHoldMs: s.maxHoldMs,
      poisonAttempts: s.poisonAttempts,
      maxDeliveries: s.maxDeliveries,
    },
    batch: { enabled: s.batch, maxSize: s.batchSize, lingerMs: s.lingerMs, timeoutMs: TIMEOUTS.batch },
    shutdown: { graceMs: 2000 },
    http: { enabled: false },
  });
}

function body(message: ModelMessage): Buffer {
  if (message.kind === 'invalid') return Buffer.from('{"entrypoint": not json');
  const envelope: Record<string, unknown> = {
    entrypoint: `${message.kind === 'refused' ? 'refuse' : 'job'}_${message.id}`,
  };
  if (message.dedupeKey !== undefined) envelope.dedupe_key = message.dedupeKey;
  return Buffer.from(JSON.stringify(envelope));
}

function apply(event: BrokerEvent, broker: Broker, config: Config): void {
  switch (event.kind) {
    case 'kill_channel':
      broker.killChannel(event.pick);
      return;
    case 'kill_consumer_connection':
      broker.killConnections('consumer');
      return;
    case 'kill_publisher_connection':
      broker.killConnections('publisher');
      return;
    case 'broker_down':
      broker.down = true;
      broker.killConnections('consumer');
      broker.killConnections('publisher');
      setTimeout(() => {
        broker.down = false;
      }, event.ms);
      return;
    case 'blocked':
      broker.setBlocked(true);
      setTimeout(() => broker.setBlocked(false), event.ms);
      return;
    case 'delete_dead_letter_queue': {
      const source = config.sources[event.pick % config.sources.length];
      if (source !== undefined) broker.deleteQueue(source.deadLetterQueue);
      return;
    }
    case 'confirms':
      broker.confirmFault = event.fault;
      setTimeout(() => {
        broker.confirmFault = 'none';
      }, event.ms);
      return;
  }
}

export async function runScenario(s: Scenario): Promise<RunResult> {
  const config = modelConfig(s);
  const clock = new VirtualClock(s.seed);
  const ledger = new Ledger();
  clock.install();
  try {
    const broker = new Broker(
      ledger,
      config.sources.map((source, i) => ({
        queue: source.queue,
        quorum: s.sources[i]?.quorum ?? false,
        dlq: source.deadLetterQueue,
      })),
    );
    const sourceOf = new Map(s.messages.map((m) => [m.id, `q${m.source}`]));
    const endpoint = new Endpoint(ledger, s.faults, TIMEOUTS, (id) => sourceOf.get(id) ?? '?');
    const level = process.env.PGQ_MODEL_LOG ?? 'silent';
    const logger = pino({ level }, pino.destination(2));
    const app = new App(config, logger, {
      connect: broker.connect,
      rpc: { enqueue: endpoint.enqueue, ...(s.batch ? { postBatch: endpoint.postBatch } : {}) },
      processMetrics: false,
    });
    for (const message of s.messages) {
      setTimeout(() => {
        const headers: Record<string, unknown> = { [MODEL_ID]: message.id };
        const properties: Record<string, unknown> = { headers, contentType: 'application/json' };
        if (message.messageId) properties.messageId = `mid-${message.id}`;
        if (message.replyTo !== undefined) properties.replyTo = message.replyTo;
        broker.publishToSource(`q${message.source}`, {
          id: message.id,
          content: body(message),
          properties,
          deliveries: 0,
        });
      }, message.at);
    }
    for (const { at, event } of s.events) {
      setTimeout(() => {
        ledger.note(Date.now(), `event ${JSON.stringify(event)}`);
        apply(event, broker, config);
      }, at);
    }
    setTimeout(() => {
      ledger.note(Date.now(), 'heal');
      endpoint.healthy = true;
      broker.down = false;
      broker.confirmFault = 'none';
      broker.setBlocked(false);
      for (const source of config.sources) broker.declare(source.deadLetterQueue);
    }, s.healAt);

    const holdLimitMs = s.maxHoldMs + TIMEOUTS.batch + TIMEOUTS.single + TIMEOUTS.confirm + 1000;
    const watch = new Watch(app, broker, ledger, config, holdLimitMs);
    await app.start();
    const acked = (): number =>
      new Set(ledger.deliveries.filter((d) => d.end === 'ack').map((d) => d.msgId)).size;
    const deadline = s.healAt + DRAIN_BUDGET_MS;
    while (clock.now < deadline && !(clock.now > s.healAt && acked() === s.messages.length)) {
      await clock.advanceTo(clock.now + STEP_MS, () => watch.check());
    }
    const drained = acked() === s.messages.length;
    let stopped = false;
    void app.stop().then(() => {
      stopped = true;
    });
    const stopBy = clock.now + config.shutdown.graceMs + 10_000;
    while (!stopped && clock.now < stopBy) await clock.advanceTo(clock.now + STEP_MS, () => watch.check());
    if (!stopped) ledger.violate(clock.now, 'shutdown did not finish within its grace');
    watch.check();
    return { scenario: s, config, ledger, drained, endedAt: clock.now, holdLimitMs };
  } finally {
    clock.uninstall();
  }
}

/** Rules checked while the run goes: intake against the pause state, and hold times. */
class Watch {
  readonly #app: App;
  readonly #broker: Broker;
  readonly #ledger: Ledger;
  readonly #config: Config;
  readonly #holdLimitMs: number;
  readonly #reported = new Set<string>();
  /** Deliveries not settled yet, by their index in the ledger. */
  #checkedUpTo = 0;
  readonly #open = new Set<number>();

  constructor(app: App, broker: Broker, ledger: Ledger, config: Config, holdLimitMs: number) {
    this.#app = app;
    this.#broker = broker;
    this.#ledger = ledger;
    this.#config = config;
    this.#holdLimitMs = holdLimitMs;
  }

  check(): void {
    const now = Date.now();
    const status = this.#app.status();
    for (const source of this.#config.sources) {
      const consumers = this.#broker.consumersOf(source.queue);
      // A consumer while paused is only allowed while the cancel (or a consume before it) is pending.
      if (status.intakePaused === true && consumers.some((c) => c.channel.pending === 0)) {
        this.#once(
          `I4: a consumer on ${source.queue} runs while intake is paused (${String(status.intakePausedFor)})`,
        );
      }
    }
    const deliveries = this.#ledger.deliveries;
    if (deliveries.length > MAX_DELIVERIES) {
      throw new Error(
        `more than ${MAX_DELIVERIES} deliveries: a redelivery loop\n${this.#ledger.trace.slice(-40).join('\n')}`,
      );
    }
    for (; this.#checkedUpTo < deliveries.length; this.#checkedUpTo++) this.#open.add(this.#checkedUpTo);
    for (const index of this.#open) {
      const record = deliveries[index];
      if (record === undefined || record.end !== undefined) {
        this.#open.delete(index);
      } else if (now - record.at > this.#holdLimitMs) {
        this.#once(
          `I3: ${record.msgId} (ch${record.channel}#${record.tag}) held past ${this.#holdLimitMs} ms`,
        );
      }
    }
  }

  #once(rule: string): void {
    if (this.#reported.has(rule)) return;
    this.#reported.add(rule);
    this.#ledger.violate(Date.now(), rule);
  }
}
