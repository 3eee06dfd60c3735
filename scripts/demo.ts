import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createConnection } from 'node:net';
import { maskUrlPassword } from '../src/config/mask.ts';
import { BridgeProcess } from '../test/support/bridge-process.ts';
import { createScratchDatabase, pgSettings, type ScratchDatabase } from '../test/support/pg.ts';
import { findPostgrest } from '../test/support/postgrest/binary.ts';
import { type PostgrestServer, startPostgrestServer } from '../test/support/postgrest/server.ts';
import { amqpUrl, TestBroker, waitFor } from '../test/support/rabbit.ts';
import { freePort } from '../test/support/rabbit-node.ts';

/**
 * The whole flow on this machine's RabbitMQ and PostgreSQL: a scratch database with PGQueuer's
 * schema and the enqueue function, an RPC endpoint (real `postgrest` when on PATH, else the
 * PostgREST-compatible test server), the built bridge as a child process, a few sample messages
 * (one invalid), then the job rows and the dead letter. Everything is removed at the end.
 */

const suffix = randomBytes(3).toString('hex');
const queue = `pgq-demo-${suffix}`;
const rawQueue = `pgq-demo-raw-${suffix}`;

const DUPLICATE_MESSAGE_ID = 'dup-1';

interface Endpoint {
  readonly url: string;
  readonly kind: string;
  close(): Promise<void>;
}

async function startEndpoint(db: ScratchDatabase): Promise<Endpoint> {
  const postgrest = findPostgrest();
  if (postgrest !== undefined) {
    const port = await freePort();
    const child: ChildProcess = spawn('postgrest', [], {
      env: {
        ...process.env,
        PGRST_DB_URI: db.connectionString,
        PGRST_DB_SCHEMAS: 'public',
        PGRST_DB_ANON_ROLE: 'pgqapi',
        PGRST_SERVER_HOST: '127.0.0.1',
        PGRST_SERVER_PORT: String(port),
      },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
      stderr += chunk;
    });
    await waitFor(
      async () => {
        if (child.exitCode !== null) throw new Error(`postgrest exited with ${child.exitCode}: ${stderr}`);
        return portOpen(port);
      },
      { timeoutMs: 30_000, message: `postgrest to listen on 127.0.0.1:${port}` },
    );
    return {
      url: `http://127.0.0.1:${port}`,
      kind: `${postgrest.banner} (postgrest on PATH)`,
      close: async () => {
        child.kill('SIGTERM');
      },
    };
  }
  const server: PostgrestServer = await startPostgrestServer({
    dbUri: db.connectionString,
    anonRole: 'pgqapi',
  });
  return {
    url: server.url,
    kind: 'the PostgREST-compatible test server (no postgrest on PATH)',
    close: () => server.close(),
  };
}

function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ port, host: '127.0.0.1' });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

interface Sample {
  readonly queue: string;
  readonly note: string;
  readonly body: Buffer;
  readonly options?: Record<string, unknown>;
  /** Publish only once a job with this dedupe key exists, so the demo's output is always the same. */
  readonly afterJobWithKey?: string;
}

const samples: Sample[] = [
  {
    queue,
    note: 'the shortest envelope: an entrypoint and a base64 payload',
    body: Buffer.from('{"entrypoint":"fetch","payload":"aGVsbG8="}'),
  },
  {
    queue,
    note: 'all six fields',
    body: Buffer.from(
      JSON.stringify({
        entrypoint: 'fetch',
        payload: 'aGVsbG8=',
        priority: 5,
        execute_after: '10 seconds',
        dedupe_key: 'fetch:hello',
        headers: { source: 'api', version: '1' },
      }),
    ),
  },
  {
    queue,
    note: 'a JSON object payload (stored as its exact text)',
    body: Buffer.from('{"entrypoint":"resize","payload":{"image":"cat.png","width":640}}'),
  },
  {
    queue: rawQueue,
    note: 'a raw source: binary body, entrypoint from a header, priority from the AMQP property',
    body: Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x00, 0xff]),
    options: { headers: { 'x-entrypoint': 'thumbnail' }, priority: 3, messageId: 'img-42' },
  },
  {
    queue,
    note: 'the same dedupe key again, while the first job is queued',
    body: Buffer.from('{"entrypoint":"fetch","dedupe_key":"fetch:hello"}'),
    options: { messageId: DUPLICATE_MESSAGE_ID },
    afterJobWithKey: 'fetch:hello',
  },
  {
    queue,
    note: 'invalid: priority is not an integer (dead-lettered with the reason)',
    body: Buffer.from('{"entrypoint":"fetch","priority":"high"}'),
    options: { messageId: 'bad-1' },
  },
];

function printable(bytes: Buffer | null): string {
  if (bytes === null) return 'NULL';
  const text = bytes.toString('utf8');
  return /^[\x20-\x7e]*$/.test(text) ? JSON.stringify(text) : `\\x${bytes.toString('hex')}`;
}

async function main(): Promise<void> {
  const cleanups: Array<() => Promise<unknown>> = [];
  try {
    console.log('pgq-bridge demo\n');
    const db = await createScratchDatabase('pgq_demo');
    cleanups.push(() => db.drop());
    console.log(`• scratch database ${db.name}: PGQueuer schema + fn_pgqueuer_enqueue (sql/install.sql)`);
    const endpoint = await startEndpoint(db);
    cleanups.push(() => endpoint.close());
    console.log(`• RPC endpoint ${endpoint.url}: ${endpoint.kind}`);

    const broker = await TestBroker.connect(amqpUrl());
    cleanups.push(async () => {
      await broker.deleteQueues(queue, `${queue}.dead`, rawQueue, `${rawQueue}.dead`);
      await broker.close();
    });
    const bridge = new BridgeProcess({
      amqp: { url: amqpUrl() },
      postgrest: { url: endpoint.url },
      sources: [
        { queue },
        { queue: rawQueue, mode: 'raw', entrypoint: 'raw_default', entrypointHeader: 'x-entrypoint' },
      ],
      http: { port: 0 },
      log: { level: 'info' },
    });
    cleanups.push(() => bridge.stop('SIGKILL'));
    // Its JSON logs are captured, not shown; the demo prints what they led to.
    await bridge.waitUntilReady(30_000);
    const channel = await broker.channel();
    console.log(
      `• bridge running (node dist/main.js), consuming ${queue} (envelope) and ${rawQueue} (raw)\n`,
    );

    console.log('Publishing:');
    for (const sample of samples) {
      const key = sample.afterJobWithKey;
      if (key !== undefined) {
        await waitFor(
          async () =>
            (await db.pool.query('SELECT 1 FROM pgqueuer WHERE dedupe_key = $1', [key])).rowCount === 1,
          {
            message: `the job with dedupe key ${key}`,
          },
        );
      }
      await broker.publish(sample.queue, [
        { body: sample.body, ...(sample.options ? { options: sample.options } : {}) },
      ]);
      const shown = sample.queue === rawQueue ? `\\x${sample.body.toString('hex')}` : sample.body.toString();
      console.log(`  → ${sample.queue === rawQueue ? 'raw ' : ''}${shown}\n    (${sample.note})`);
    }

    await waitFor(
      async () => {
        const jobs = (await db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM pgqueuer')).rows[0]
          ?.n;
        const main = await channel.checkQueue(queue);
        const dead = await channel.checkQueue(`${queue}.dead`);
        return jobs === 4 && dead.messageCount === 1 && main.messageCount === 0;
      },
      { timeoutMs: 30_000, message: '4 jobs and 1 dead letter' },
    );

    const { rows } = await db.pool.query<{
      id: string;
      entrypoint: string;
      priority: number;
      delay: string;
      dedupe_key: string | null;
      payload: Buffer | null;
      headers: unknown;
      status: string;
    }>(
      `SELECT id::text, entrypoint, priority, extract(epoch FROM execute_after - created)::text AS delay,
              dedupe_key, payload, headers, status::text FROM pgqueuer ORDER BY id`,
    );
    console.log('\nJob rows in pgqueuer:');
    for (const row of rows) {
      console.log(
        `  #${row.id} ${row.entrypoint} priority=${row.priority} execute_after=now+${Number(row.delay)}s ` +
          `dedupe_key=${row.dedupe_key ?? 'NULL'} status=${row.status}\n` +
          `      payload=${printable(row.payload)} headers=${JSON.stringify(row.headers)}`,
      );
    }

    const duplicate = await bridge.waitForLog(
      (r) => r.outcome === 'duplicate' && r.messageId === DUPLICATE_MESSAGE_ID,
    );
    const original = rows.find((row) => row.dedupe_key === duplicate.dedupeKey);
    console.log(
      `\nThe duplicate (message ${DUPLICATE_MESSAGE_ID}, dedupe_key ${String(duplicate.dedupeKey)}):`,
    );
    console.log(
      `  bridge: "${duplicate.msg}"; the message is acked and job #${original?.id} stays the only one with that key.`,
    );
    console.log(
      explainIdGap(
        rows.map((row) => Number(row.id)),
        await sequenceValue(db),
      ),
    );

    const [dead] = await broker.drainQueue(`${queue}.dead`);
    console.log(`\nDead letter in ${queue}.dead:`);
    console.log(`  body: ${dead?.content.toString()}`);
    for (const [key, value] of Object.entries(dead?.properties.headers ?? {})) {
      if (key.startsWith('x-pgq-bridge-error')) console.log(`  ${key}: ${String(value)}`);
    }

    const { code } = await bridge.stop('SIGTERM');
    console.log(`\nBridge stopped with SIGTERM: exit code ${code} (graceful).`);
  } finally {
    for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
  }
  console.log('Cleaned up: queues deleted, endpoint stopped, scratch database dropped.');
}

/** The last id pgqueuer_id_seq handed out, whether or not a row kept it. */
async function sequenceValue(db: ScratchDatabase): Promise<number> {
  const { rows } = await db.pool.query<{ last: string }>(
    'SELECT last_value::text AS last FROM pgqueuer_id_seq',
  );
  return Number(rows[0]?.last);
}

/**
 * Ids come from a sequence, and PostgreSQL never gives a sequence number back: the duplicate's
 * INSERT took one before the unique index refused the row and the call was rolled back.
 */
function explainIdGap(ids: readonly number[], lastFromSequence: number): string {
  const taken = new Set(ids);
  const missing: number[] = [];
  for (let id = 1; id <= lastFromSequence; id++) if (!taken.has(id)) missing.push(id);
  if (missing.length === 0) return `  ids: ${ids.join(', ')}, no gap.`;
  const gap = missing.map((id) => `#${id}`).join(', ');
  return (
    `  ids: ${ids.join(', ')}; pgqueuer_id_seq is at ${lastFromSequence}, so ${gap} never became a row.\n` +
    "  An INSERT that is refused still uses up the id it drew: here the duplicate's, refused by the " +
    'unique index on dedupe_key.\n  Sequences are not rolled back, so job ids are unique and increasing, not a count.'
  );
}

main().catch((error: unknown) => {
  console.error(`demo failed: ${error instanceof Error ? error.message : String(error)}`);
  const pg = pgSettings();
  const postgres = pg.host.startsWith('/') ? `socket ${pg.host} (port ${pg.port})` : `${pg.host}:${pg.port}`;
  console.error(
    `Is RabbitMQ at ${maskUrlPassword(amqpUrl())} (AMQP_URL) and PostgreSQL at ${postgres} as ${pg.user} ` +
      '(PGHOST, PGPORT, PGUSER) running? bash .ci/run starts both.',
  );
  process.exitCode = 1;
});
