// The idempotency ledger's cost, measured directly in SQL (no RPC server, no broker):
//   1. bulk jobs/s through fn_pgqueuer_enqueue_batch and fn_pgqueuer_enqueue_batch_once, each
//      on a few connections calling batches of unique jobs, alternating so that a drift in the
//      machine's speed does not pass for the ledger's cost;
//   2. the ledger's size per million entries (one day's partition, heap and primary key);
//   3. what dropping a partition of a million entries costs while the ledger calls run at full
//      speed: how long prune takes, and jobs/s and the slowest call around it.
//
//   npm run bench:ledger -- [--connections 4] [--batch 500] [--seconds 15] [--rounds 2] [--entries 1000000]

import { randomUUID } from 'node:crypto';
import { parseArgs } from 'node:util';
import pg from 'pg';
import {
  BATCH_INSTALL_SQL,
  connectionString,
  createScratchDatabase,
  runPsql,
  type ScratchDatabase,
} from '../test/support/pg.ts';

const LEDGER_SQL = new URL('../sql/install-ledger.sql', import.meta.url).pathname;

const { values } = parseArgs({
  options: {
    connections: { type: 'string', default: '4' },
    batch: { type: 'string', default: '500' },
    seconds: { type: 'string', default: '15' },
    rounds: { type: 'string', default: '2' },
    entries: { type: 'string', default: '1000000' },
  },
});
const CONNECTIONS = Number(values.connections);
const BATCH = Number(values.batch);
const SECONDS = Number(values.seconds);
const ROUNDS = Number(values.rounds);
const ENTRIES = Number(values.entries);

type Mode = 'plain' | 'ledger';

interface Call {
  /** When the call ended, in ms since the run began. */
  readonly at: number;
  readonly ms: number;
}

function jobsBody(mode: Mode): string {
  const jobs: string[] = [];
  for (let i = 0; i < BATCH; i++) {
    // A uuid as the message id, as RabbitMQ clients usually set it; a 16-byte payload.
    const id = mode === 'ledger' ? `"message_id":"${randomUUID()}",` : '';
    jobs.push(`{${id}"entrypoint":"bench","payload":"\\\\x00112233445566778899aabbccddeeff"}`);
  }
  return `[${jobs.join(',')}]`;
}

/** Calls the bulk function on CONNECTIONS connections for `seconds`; every call's end and duration. */
async function load(
  db: ScratchDatabase,
  mode: Mode,
  seconds: number,
  during?: (elapsedMs: () => number) => Promise<void>,
): Promise<Call[]> {
  const fn = mode === 'ledger' ? 'fn_pgqueuer_enqueue_batch_once' : 'fn_pgqueuer_enqueue_batch';
  const clients = await Promise.all(
    Array.from({ length: CONNECTIONS }, async () => {
      const client = new pg.Client({ connectionString: connectionString(db.name) });
      await client.connect();
      return client;
    }),
  );
  const calls: Call[] = [];
  const started = performance.now();
  const elapsed = () => performance.now() - started;
  try {
    const side = during?.(elapsed);
    await Promise.all(
      clients.map(async (client) => {
        while (elapsed() < seconds * 1000) {
          const body = jobsBody(mode);
          const begun = performance.now();
          await client.query(`SELECT ${fn}($1::jsonb)`, [body]);
          calls.push({ at: elapsed(), ms: performance.now() - begun });
        }
      }),
    );
    await side;
  } finally {
    await Promise.all(clients.map((client) => client.end()));
  }
  return calls;
}

function jobsPerSecond(calls: readonly Call[], fromMs: number, toMs: number): number {
  return (
    (calls.filter((call) => call.at >= fromMs && call.at < toMs).length * BATCH * 1000) / (toMs - fromMs)
  );
}

function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] ?? Number.NaN;
}

async function reset(db: ScratchDatabase): Promise<void> {
  await db.pool.query('TRUNCATE pgqueuer, pgqueuer_log, pgqueuer_ledger');
  await db.pool.query('VACUUM ANALYZE pgqueuer, pgqueuer_log');
  await db.pool.query('CHECKPOINT');
}

async function throughput(db: ScratchDatabase): Promise<Record<Mode, number[]>> {
  const result: Record<Mode, number[]> = { plain: [], ledger: [] };
  for (let round = 0; round < ROUNDS; round++) {
    for (const mode of ['plain', 'ledger'] as const) {
      await reset(db);
      const calls = await load(db, mode, SECONDS);
      // The first second warms up connections and plans.
      const rate = jobsPerSecond(calls, 1000, SECONDS * 1000);
      result[mode].push(rate);
      console.log(`  round ${round + 1} ${mode.padEnd(6)} ${Math.round(rate)} jobs/s`);
    }
  }
  return result;
}

/** Fills an old day's partition with ENTRIES uuid entries, as the function writes them; its size. */
async function fillOldPartition(db: ScratchDatabase): Promise<{ heap: number; index: number }> {
  await db.pool.query(
    `CREATE TABLE pgqueuer_ledger_20000101 PARTITION OF pgqueuer_ledger FOR VALUES FROM ('2000-01-01') TO ('2000-01-02')`,
  );
  const chunk = 100_000;
  for (let done = 0; done < ENTRIES; done += chunk) {
    await db.pool.query(
      `INSERT INTO pgqueuer_ledger (message_id, day, job_id)
       SELECT gen_random_uuid()::text, '2000-01-01', g FROM generate_series($1::bigint, $2::bigint) AS g`,
      [done + 1, Math.min(ENTRIES, done + chunk)],
    );
  }
  await db.pool.query('VACUUM ANALYZE pgqueuer_ledger_20000101');
  const { rows } = await db.pool.query<{ heap: string; index: string }>(
    `SELECT pg_table_size('pgqueuer_ledger_20000101') AS heap, pg_indexes_size('pgqueuer_ledger_20000101') AS index`,
  );
  return { heap: Number(rows[0]?.heap), index: Number(rows[0]?.index) };
}

async function dropUnderLoad(db: ScratchDatabase): Promise<void> {
  const seconds = Math.max(SECONDS, 12);
  const dropAt = (seconds / 2) * 1000;
  let dropStart = 0;
  let dropMs = 0;
  const calls = await load(db, 'ledger', seconds, async (elapsed) => {
    while (elapsed() < dropAt) await new Promise((resolve) => setTimeout(resolve, 50));
    dropStart = elapsed();
    const { rows } = await db.pool.query<{ dropped: number }>('SELECT fn_pgqueuer_ledger_prune() AS dropped');
    dropMs = elapsed() - dropStart;
    if (rows[0]?.dropped !== 1) throw new Error(`prune dropped ${rows[0]?.dropped} partitions, expected 1`);
  });
  const before = calls
    .filter((call) => call.at > 1000 && call.at < dropStart)
    .map((call) => call.ms)
    .sort((a, b) => a - b);
  // Calls that were running while the drop ran, or ended within a second after it.
  const around = calls.filter(
    (call) => call.at >= dropStart && call.at - call.ms <= dropStart + dropMs + 1000,
  );
  console.log(`  prune (DROP of a ${ENTRIES}-entry partition) took ${dropMs.toFixed(1)} ms`);
  console.log(
    `  jobs/s: before ${Math.round(jobsPerSecond(calls, 1000, dropStart))}, ` +
      `in the second from the drop ${Math.round(jobsPerSecond(calls, dropStart, dropStart + 1000))}, ` +
      `after ${Math.round(jobsPerSecond(calls, dropStart + 1000, seconds * 1000))}`,
  );
  console.log(
    `  call ms before the drop: median ${percentile(before, 0.5).toFixed(1)}, p99 ${percentile(before, 0.99).toFixed(1)}; ` +
      `slowest call around it ${Math.max(...around.map((call) => call.ms)).toFixed(1)}`,
  );
}

async function main(): Promise<void> {
  const db = await createScratchDatabase('bench_ledger');
  try {
    await runPsql(db.name, BATCH_INSTALL_SQL);
    await runPsql(db.name, LEDGER_SQL);
    const { rows } = await db.pool.query<{ server_version: string }>('SHOW server_version');
    console.log(
      `PostgreSQL ${rows[0]?.server_version}; ${CONNECTIONS} connections, batches of ${BATCH}, ${SECONDS} s per run`,
    );
    console.log('bulk throughput, direct SQL:');
    const rates = await throughput(db);
    const mean = (list: readonly number[]) => list.reduce((sum, rate) => sum + rate, 0) / list.length;
    console.log(
      `  mean: plain ${Math.round(mean(rates.plain))} jobs/s, ledger ${Math.round(mean(rates.ledger))} jobs/s ` +
        `(${((mean(rates.ledger) / mean(rates.plain)) * 100).toFixed(0)} %)`,
    );
    await reset(db);
    const size = await fillOldPartition(db);
    const perMillion = (bytes: number) => ((bytes / ENTRIES) * 1e6) / 2 ** 20;
    console.log(
      `ledger size per million entries (uuid message ids): heap ${perMillion(size.heap).toFixed(1)} MiB, ` +
        `primary key ${perMillion(size.index).toFixed(1)} MiB, total ${perMillion(size.heap + size.index).toFixed(1)} MiB`,
    );
    console.log('dropping that partition while ledger calls run at full speed:');
    await dropUnderLoad(db);
  } finally {
    await db.drop();
  }
}

await main();
