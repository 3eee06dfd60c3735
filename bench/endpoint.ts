import { type ChildProcess, execFile, spawn, spawnSync } from 'node:child_process';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { connectionString } from '../test/support/pg.ts';
import type { Cleanup } from './cleanup.ts';
import { sleep } from './measure.ts';
import type { EndpointChoice } from './options.ts';
import { listeningPid } from './procs.ts';

/**
 * The RPC endpoint every scenario calls: the PostgREST-compatible test server (default), a real
 * `postgrest` on PATH started on the scratch database, or a user's own PostgREST at a URL. The
 * report names which one, and its version as the endpoint itself gives it (`Server` header).
 */

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const SERVER_CLI = fileURLToPath(new URL('../test/support/postgrest/cli.ts', import.meta.url));
const DB_POOL = 10;
const START_TIMEOUT_MS = 60_000;

export interface Endpoint {
  readonly kind: EndpointChoice['kind'];
  readonly url: string;
  /** The endpoint's process when it runs on this machine; undefined: its CPU is not measured. */
  readonly pid: number | undefined;
  /** e.g. `postgrest/10.1.2`, from the endpoint's Server header. */
  readonly version: string;
  /** What was measured, for the report. */
  readonly description: string;
}

/**
 * PostgREST 10.x has no --version; its --help starts with the name and version, e.g.
 * "PostgREST 10.1.2 (4b8e0b0)". undefined when the text does not look like that.
 */
export function versionFromHelp(text: string): string | undefined {
  return /PostgREST\s+v?(\d+(?:\.\d+)*)/i.exec(text)?.[1];
}

/** The version of the `postgrest` on PATH, or undefined when there is none. */
export function postgrestOnPath(): string | undefined {
  const help = spawnSync('postgrest', ['--help'], { encoding: 'utf8', timeout: 10_000 });
  if (help.error !== undefined || help.status !== 0) return undefined;
  return versionFromHelp(`${help.stdout}${help.stderr}`) ?? 'unknown';
}

export async function startEndpoint(
  choice: EndpointChoice,
  database: string,
  cleanup: Cleanup,
): Promise<Endpoint> {
  if (choice.kind === 'url') {
    const { port, hostname } = new URL(choice.url);
    const local = hostname === '127.0.0.1' || hostname === 'localhost' || hostname === '[::1]';
    const pid = local ? listeningPid(Number(port || 80)) : undefined;
    return {
      kind: 'url',
      url: choice.url,
      pid,
      version: await serverHeader(choice.url),
      description: `your endpoint at ${choice.url}${pid === undefined ? ' (its CPU is not measured: not a local process)' : ''}`,
    };
  }
  if (choice.kind === 'postgrest') {
    const pathVersion = postgrestOnPath();
    if (pathVersion === undefined) {
      throw new Error('--endpoint postgrest: no postgrest on PATH (`postgrest --help` did not run)');
    }
    const port = await freePort();
    const child = spawn('postgrest', [], {
      env: {
        ...process.env,
        PGRST_DB_URI: connectionString(database),
        PGRST_DB_SCHEMAS: 'public',
        PGRST_DB_SCHEMA: 'public',
        PGRST_DB_ANON_ROLE: 'pgqapi',
        PGRST_DB_POOL: String(DB_POOL),
        PGRST_SERVER_HOST: '127.0.0.1',
        PGRST_SERVER_PORT: String(port),
        PGRST_LOG_LEVEL: 'crit',
      },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    cleanup.addChild('stop postgrest', child);
    const url = `http://127.0.0.1:${port}`;
    await untilAnswering(url, child);
    return {
      kind: 'postgrest',
      url,
      pid: child.pid,
      version: await serverHeader(url),
      description: `PostgREST ${pathVersion} (postgrest on PATH), db-pool ${DB_POOL}, on the scratch database`,
    };
  }
  const { url, child } = await startCompatServer(database, cleanup);
  return {
    kind: 'compat',
    url,
    pid: child.pid,
    version: await serverHeader(url),
    description: `the PostgREST-compatible test server (test/support/postgrest), db-pool ${DB_POOL}`,
  };
}

async function serverHeader(url: string): Promise<string> {
  try {
    const response = await fetch(`${url}/`, { signal: AbortSignal.timeout(10_000) });
    await response.arrayBuffer();
    return response.headers.get('server') ?? 'unknown (no Server header)';
  } catch (error) {
    return `unknown (${String(error)})`;
  }
}

async function untilAnswering(url: string, child: ChildProcess): Promise<void> {
  let stderr = '';
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
    stderr = (stderr + chunk).slice(-4000);
  });
  const deadline = performance.now() + START_TIMEOUT_MS;
  while (performance.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`postgrest exited (${child.exitCode}):\n${stderr}`);
    try {
      const response = await fetch(`${url}/`, { signal: AbortSignal.timeout(2000) });
      await response.arrayBuffer();
      if (response.ok) return;
    } catch {
      // Not listening yet.
    }
    await sleep(200);
  }
  throw new Error(`postgrest did not answer within ${START_TIMEOUT_MS / 1000} s:\n${stderr}`);
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() =>
        typeof address === 'object' && address !== null ? resolve(address.port) : reject(),
      );
    });
  });
}

/**
 * The test server in its own process, as PostgREST would run: inside this process it would share
 * one event loop with the load generators and the ceilings would measure that contention.
 */
async function startCompatServer(
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
      START_TIMEOUT_MS,
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

const execFileAsync = promisify(execFile);

/** Runs a SQL file against a database given by URI (a user's own, behind a URL endpoint). */
export async function psqlFile(uri: string, file: string): Promise<void> {
  await execFileAsync('psql', ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', uri, '-f', file]);
}
