import { setMaxListeners } from 'node:events';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Bench } from 'tinybench';
import { ChannelAcks } from '../src/amqp/acks.ts';
import type { EnqueueArgs } from '../src/message/args.ts';
import { decodeMessage } from '../src/message/decode.ts';
import { Hold } from '../src/pipeline/hold.ts';
import { Batcher } from '../src/postgrest/batcher.ts';
import { classify } from '../src/postgrest/classify.ts';
import type { RpcResult } from '../src/postgrest/client.ts';
import { encodeEnqueueBody } from '../src/postgrest/request-body.ts';
import { envelope, jobArgs } from './messages.ts';

/**
 * Micro-benchmarks of the per-message functions on the bridge's hot path, with tinybench: each
 * optimisation of one of them comes with a number from here. Results as JSON in bench/results.
 *
 *   npm run bench:micro [-- --time MS]
 */

const BATCH = 100;
/** Deliveries in flight at once in batch mode: the default prefetch (10 calls × 100). */
const IN_FLIGHT = 1000;
const OUT_DIR = fileURLToPath(new URL('./results', import.meta.url));

type Message = { readonly fields: { readonly deliveryTag: number } };

/**
 * The end of the event-loop turn, run by the task itself once it has acked a whole batch, as
 * happens when a bulk call answers: the task measures the coalescing, not the event loop.
 */
class ManualTurn {
  #pending: (() => void)[] = [];
  readonly timing = {
    endOfTurn: (flush: () => void) => {
      this.#pending.push(flush);
    },
    after: () => () => {},
  };

  end(): void {
    const pending = this.#pending;
    this.#pending = [];
    for (const flush of pending) flush();
  }
}

function tasks(): Record<string, () => unknown> {
  const body = envelope(42, Date.now());
  const args: EnqueueArgs = jobArgs(42, Date.now());
  const enqueued: RpcResult = { kind: 'enqueued', jobId: '123' };
  const conflict: RpcResult = {
    kind: 'http_error',
    status: 409,
    code: '23505',
    message: 'duplicate key value violates unique constraint "pgqueuer_unique_dedupe_key"',
    details: null,
    hint: null,
    retryAfterMs: 0,
  };
  const context = { hasDedupeKey: true, dedupeConstraint: 'pgqueuer_unique_dedupe_key' };
  let tag = 0;
  let sent = 0;
  const turn = new ManualTurn();
  const acks = new ChannelAcks<Message>(
    { ack: () => sent++, requeue: () => sent++ },
    { ms: 20, batch: 1 },
    turn.timing,
  );
  const ids = Array.from({ length: BATCH }, (_, i) => ({ id: String(i) }));
  const batcher = new Batcher(
    { postBatch: async () => ids },
    { maxSize: BATCH, lingerMs: 5, concurrency: 10, maxBytes: 32 * 1024 * 1024 },
  );
  const drain = new AbortController();
  setMaxListeners(0, drain.signal);
  const held = Array.from({ length: IN_FLIGHT }, () => ({
    receivedAt: Date.now(),
    lost: new AbortController().signal,
  }));
  return {
    [`hold: is it over? ${IN_FLIGHT} deliveries in flight`]: () => {
      const holds = held.map((delivery) => new Hold(delivery, drain.signal, 60_000));
      let over = 0;
      for (const hold of holds) if (hold.aborted) over++;
      for (const hold of holds) hold.dispose();
      return over;
    },
    'decode envelope': () =>
      decodeMessage({ body, properties: {} }, { mode: 'envelope', dedupeKeyFromMessageId: false }),
    'encode enqueue body': () => encodeEnqueueBody(args),
    'classify enqueued': () => classify(enqueued, context),
    'classify 409 23505': () => classify(conflict, context),
    [`ack coalescing, ${BATCH} deliveries`]: () => {
      const messages = Array.from({ length: BATCH }, () => ({ fields: { deliveryTag: ++tag } }));
      for (const message of messages) acks.delivered(message);
      for (const message of messages) acks.ack(message);
      turn.end();
      return sent;
    },
    [`batch assembly, ${BATCH} jobs`]: () =>
      Promise.all(Array.from({ length: BATCH }, () => batcher.enqueue(args, () => true))),
  };
}

async function main(argv: readonly string[]): Promise<void> {
  const timeFlag = argv.indexOf('--time');
  const time = timeFlag >= 0 ? Number(argv[timeFlag + 1]) : 1000;
  const bench = new Bench({ name: 'pgq-bridge hot path', time, warmupTime: Math.min(500, time) });
  for (const [name, fn] of Object.entries(tasks())) bench.add(name, fn);
  await bench.run();
  const results = bench.tasks.map((task) => {
    const result = task.result as {
      state: string;
      latency?: { mean: number; p50: number; p99: number; rme: number; samples?: unknown };
      throughput?: { mean: number };
    };
    return {
      name: task.name,
      state: result.state,
      meanNs: (result.latency?.mean ?? Number.NaN) * 1e6,
      p50Ns: (result.latency?.p50 ?? Number.NaN) * 1e6,
      p99Ns: (result.latency?.p99 ?? Number.NaN) * 1e6,
      rmePercent: result.latency?.rme ?? Number.NaN,
      opsPerSecond: result.throughput?.mean ?? Number.NaN,
    };
  });
  for (const r of results) {
    process.stdout.write(
      `${r.name.padEnd(36)} ${r.meanNs.toFixed(0).padStart(9)} ns mean  p99 ${r.p99Ns.toFixed(0).padStart(9)} ns  ±${r.rmePercent.toFixed(1)}%\n`,
    );
  }
  mkdirSync(OUT_DIR, { recursive: true });
  const startedAt = new Date().toISOString();
  const file = join(OUT_DIR, `micro-${startedAt.replaceAll(':', '-')}.json`);
  writeFileSync(file, `${JSON.stringify({ startedAt, node: process.version, time, results }, null, 2)}\n`);
  process.stdout.write(`results: ${file}\n`);
}

main(process.argv.slice(2)).catch((error: unknown) => {
  process.stderr.write(
    `bench:micro: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
  );
  process.exitCode = 1;
});
