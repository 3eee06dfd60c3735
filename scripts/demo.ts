import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createConnection } from 'node:net';
import { BridgeProcess } from '../test/support/bridge-process.ts';
import { createScratchDatabase, type ScratchDatabase } from '../test/support/pg.ts';
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

interface Endpoint {
  readonly url: string;
  readonly kind: string;
  close(): Promise<void>;
}

async function startEndpoint(db: ScratchDatabase): Promise<Endpoint> {
  if (spawnSync('postgrest', ['--version']).status === 0) {
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
      stdio: 'ignore',
    });
    await waitFor(() => portOpen(port), { timeoutMs: 30_000, message: 'postgrest to listen' });
    return {
      url: `http://127.0.0.1:${port}`,
      kind: 'PostgREST (postgrest on PATH)',
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
    note: "the user document's example",
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
    note: 'the same dedupe key again (acked as a duplicate, no second job)',
    body: Buffer.from('{"entrypoint":"fetch","dedupe_key":"fetch:hello"}'),
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

main().catch((error: unknown) => {
  console.error(`demo failed: ${error instanceof Error ? error.message : String(error)}`);
  console.error(
    'Is RabbitMQ on 127.0.0.1:5672 and PostgreSQL on 127.0.0.1:5432 running? (bash .ci/run starts both)',
  );
  process.exitCode = 1;
});
