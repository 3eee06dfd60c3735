import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import {
  BATCH_INSTALL_SQL,
  createScratchDatabase,
  INSTALL_SQL,
  LEDGER_INSTALL_SQL,
  PGQUEUER_SCHEMA_SQL,
  runPsql,
} from '../test/support/pg.ts';
import { amqpUrl, TestBroker } from '../test/support/rabbit.ts';
import type { Cleanup } from './cleanup.ts';
import { type Endpoint, psqlFile, startEndpoint } from './endpoint.ts';
import type { BenchOptions } from './options.ts';
import { listeningPid } from './procs.ts';

/**
 * What every scenario shares: one database, one RPC endpoint in front of it (see endpoint.ts),
 * and one broker connection. By default the database is a scratch one made for the run; with a
 * URL endpoint it is the one behind that endpoint.
 */

const ROOT = fileURLToPath(new URL('../', import.meta.url));
export const BRIDGE_MAIN = fileURLToPath(new URL('../dist/main.js', import.meta.url));

export interface JobDatabase {
  readonly connectionString: string;
  /** Superuser (or owner) pool, where job rows are counted and emptied. */
  readonly pool: pg.Pool;
}

export interface Rig {
  readonly db: JobDatabase;
  readonly endpoint: Endpoint;
  /** The endpoint's base URL. */
  readonly rpcUrl: string;
  readonly broker: TestBroker;
  readonly amqpUrl: string;
  /** Messages carry ids and the bridge calls the ledger's `_once` functions. */
  readonly ledger: boolean;
  readonly postgresPid: number | undefined;
  /** The database's name, to tell its backends from those of other work on the same server. */
  readonly databaseName: string;
  readonly rabbitmqPid: number | undefined;
  readonly versions: { readonly postgres: string; readonly rabbitmq: string; readonly endpoint: string };
  /** The request path of an RPC function on the endpoint. */
  rpcPath(fn: string): string;
  /** Empties the job tables and restarts the id sequence, then checkpoints, so every scenario starts alike. */
  resetJobs(): Promise<void>;
  /** Ids handed out so far: cheap to poll, and an upper bound of committed rows. */
  idsTaken(): Promise<number>;
  countJobs(): Promise<number>;
}

/** Runs `npm run build`; the bridge scenarios run dist/main.js, which must match src/. */
export function build(): void {
  process.stdout.write('building the bridge (npm run build)…\n');
  const result = spawnSync('npm', ['run', 'build', '--silent'], {
    cwd: ROOT,
    encoding: 'utf8',
    timeout: 180_000,
  });
  if (result.status !== 0) {
    throw new Error(
      `npm run build failed (exit ${result.status ?? result.signal}); the bridge scenarios need dist/main.js:\n` +
        `${result.stdout}${result.stderr}`,
    );
  }
}

export function checkBuilt(): void {
  if (!existsSync(BRIDGE_MAIN)) {
    throw new Error(`${BRIDGE_MAIN} does not exist: run npm run build, or drop --no-build`);
  }
}

export async function startRig(cleanup: Cleanup, options: BenchOptions): Promise<Rig> {
  const { db, database } = await jobDatabase(cleanup, options);
  const endpoint = await startEndpoint(options.endpoint, database, cleanup);
  const url = amqpUrl();
  const broker = await TestBroker.connect(url);
  cleanup.add('close the broker connection', () => broker.close());
  const { rows } = await db.pool.query<{ version: string }>(
    "SELECT current_setting('server_version') AS version",
  );
  const serverProperties = broker.connection?.connection.serverProperties;
  const base = new URL(endpoint.url);
  const dbUrl = new URL(db.connectionString);
  const localDb = ['127.0.0.1', 'localhost', ''].includes(dbUrl.hostname);
  return {
    db,
    endpoint,
    rpcUrl: endpoint.url,
    broker,
    amqpUrl: url,
    ledger: options.ledger,
    postgresPid: localDb ? listeningPid(Number(dbUrl.port || 5432)) : undefined,
    databaseName: database,
    rabbitmqPid: listeningPid(Number(new URL(url).port || 5672)),
    versions: {
      postgres: rows[0]?.version ?? 'unknown',
      rabbitmq: typeof serverProperties?.version === 'string' ? serverProperties.version : 'unknown',
      endpoint: endpoint.version,
    },
    rpcPath: (fn) => `${base.pathname.replace(/\/+$/, '')}/rpc/${fn}`,
    resetJobs: async () => {
      // Message ids start again at 0 in every scenario: the ledger must forget the last one's.
      await db.pool.query(
        `TRUNCATE pgqueuer, pgqueuer_log${options.ledger ? ', pgqueuer_ledger' : ''} RESTART IDENTITY`,
      );
      await db.pool.query('CHECKPOINT');
    },
    idsTaken: async () => {
      const result = await db.pool.query<{ last_value: string; is_called: boolean }>(
        'SELECT last_value, is_called FROM pgqueuer_id_seq',
      );
      const row = result.rows[0];
      return row?.is_called ? Number(row.last_value) : 0;
    },
    countJobs: async () => {
      const result = await db.pool.query<{ count: string }>('SELECT count(*) AS count FROM pgqueuer');
      return Number(result.rows[0]?.count ?? 0);
    },
  };
}

/**
 * A scratch database with the schema and both functions, or, behind a URL endpoint, the user's
 * database: the harness empties its job tables before every scenario, so it installs the schema
 * there only when allowed (--endpoint-setup) and otherwise insists that the tables exist and
 * hold no jobs, so that nothing of the user's is ever deleted.
 */
async function jobDatabase(
  cleanup: Cleanup,
  options: BenchOptions,
): Promise<{ db: JobDatabase; database: string }> {
  if (options.endpoint.kind !== 'url' || options.endpointDb === undefined) {
    const scratch = await createScratchDatabase('pgqb_bench');
    cleanup.add(`drop database ${scratch.name}`, () => scratch.drop());
    // The bulk function is there either way; only --batch makes the bridge call it.
    await runPsql(scratch.name, BATCH_INSTALL_SQL);
    if (options.ledger) await runPsql(scratch.name, LEDGER_INSTALL_SQL);
    return { db: scratch, database: scratch.name };
  }
  const uri = options.endpointDb;
  const pool = new pg.Pool({ connectionString: uri, max: 4 });
  pool.on('error', () => {});
  cleanup.add('close the endpoint database pool', () => pool.end());
  const { rows } = await pool.query<{ present: boolean }>(
    "SELECT to_regclass('pgqueuer') IS NOT NULL AS present",
  );
  if (options.endpointSetup) {
    if (rows[0]?.present !== true) await pool.query(await readFile(PGQUEUER_SCHEMA_SQL, 'utf8'));
    await psqlFile(uri, INSTALL_SQL);
    await psqlFile(uri, BATCH_INSTALL_SQL);
    await pool.query("NOTIFY pgrst, 'reload schema'");
  } else {
    if (rows[0]?.present !== true) {
      throw new Error(
        '--endpoint URL: no pgqueuer table in --endpoint-db; pass --endpoint-setup to install it',
      );
    }
    const count = await pool.query<{ n: string }>('SELECT count(*) AS n FROM pgqueuer');
    if (Number(count.rows[0]?.n ?? 0) > 0) {
      throw new Error(
        '--endpoint URL: pgqueuer holds jobs, which the run would delete; empty it or pass --endpoint-setup',
      );
    }
  }
  return { db: { connectionString: uri, pool }, database: new URL(uri).pathname.slice(1) };
}
