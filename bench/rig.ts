import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import {
  BATCH_INSTALL_SQL,
  connectionString,
  createScratchDatabase,
  runPsql,
  type ScratchDatabase,
} from '../test/support/pg.ts';
import { amqpUrl, TestBroker } from '../test/support/rabbit.ts';
import type { Cleanup } from './cleanup.ts';
import { listeningPid } from './procs.ts';

/**
 * What every scenario shares: one scratch database, one PostgREST-compatible RPC server in front
 * of it (db-pool 10), and one broker connection. The server runs in its own process, as
 * PostgREST would: inside this process it would share one event loop with the load generators
 * and the ceilings would measure that contention instead of the endpoint.
 */

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const SERVER_CLI = fileURLToPath(new URL('../test/support/postgrest/cli.ts', import.meta.url));
export const BRIDGE_MAIN = fileURLToPath(new URL('../dist/main.js', import.meta.url));
const DB_POOL = 10;

export interface Rig {
  readonly db: ScratchDatabase;
  readonly rpcUrl: string;
  readonly rpcServerPid: number;
  readonly broker: TestBroker;
  readonly amqpUrl: string;
  readonly postgresPid: number | undefined;
  readonly rabbitmqPid: number | undefined;
  readonly versions: { readonly postgres: string; readonly rabbitmq: string };
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

export async function startRig(cleanup: Cleanup): Promise<Rig> {
  const db = await createScratchDatabase('pgqb_bench');
  cleanup.add(`drop database ${db.name}`, () => db.drop());
  // The bulk function is there either way; only --batch makes the bridge call it.
  await runPsql(db.name, BATCH_INSTALL_SQL);
  const { url: rpcUrl, child } = await startRpcServer(db.name, cleanup);
  const url = amqpUrl();
  const broker = await TestBroker.connect(url);
  cleanup.add('close the broker connection', () => broker.close());
  const { rows } = await db.pool.query<{ version: string }>(
    "SELECT current_setting('server_version') AS version",
  );
  const serverProperties = broker.connection?.connection.serverProperties;
  return {
    db,
    rpcUrl,
    rpcServerPid: child.pid ?? 0,
    broker,
    amqpUrl: url,
    postgresPid: listeningPid(Number(new URL(connectionString(db.name)).port || 5432)),
    rabbitmqPid: listeningPid(Number(new URL(url).port || 5672)),
    versions: {
      postgres: rows[0]?.version ?? 'unknown',
      rabbitmq: typeof serverProperties?.version === 'string' ? serverProperties.version : 'unknown',
    },
    resetJobs: async () => {
      await db.pool.query('TRUNCATE pgqueuer, pgqueuer_log RESTART IDENTITY');
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

async function startRpcServer(
  database: string,
  cleanup: Cleanup,
): Promise<{ url: string; child: ChildProcess }> {
  const child = spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      SERVER_CLI,
      '--db-uri',
      connectionString(database),
      '--port',
      '0',
      '--anon-role',
      'pgqapi',
      '--pool',
      String(DB_POOL),
    ],
    { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  cleanup.addChild('stop the RPC server', child);
  let stderr = '';
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
    stderr = (stderr + chunk).slice(-4000);
  });
  const url = await new Promise<string>((resolve, reject) => {
    let stdout = '';
    const timer = setTimeout(
      () => reject(new Error(`the RPC server did not start within 60 s:\n${stderr}`)),
      60_000,
    );
    child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
      stdout += chunk;
      const line = /^(http:\/\/\S+)\n/m.exec(stdout);
      if (line?.[1] !== undefined) {
        clearTimeout(timer);
        resolve(line[1]);
      }
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`the RPC server exited (${code ?? signal}) before listening:\n${stderr}`));
    });
    child.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
  });
  return { url, child };
}
