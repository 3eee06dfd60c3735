// The connection pool, with PostgREST 10.1.2's behaviour around broken connections.
//
// PostgREST's pool (hasql-pool) only finds out that a pooled connection died when it uses
// it, and it puts a connection that failed a query back into the pool. node-postgres instead
// notices a dead idle connection at once and drops it silently. To answer like PostgREST,
// every pooled connection that dies is remembered as a "dead connection" that the next
// requests draw first (last died, first drawn):
//   - first use of one that received a server error before dying (57P01 after
//     pg_terminate_backend) → that error (500 in 10.1.2);
//   - any other use → 503 PGRST001 with libpq's text, which makes the connection worker
//     flush the pool, forgetting all dead connections (recordings 73, 73b, 73c).

import pg from 'pg';
import {
  ApiError,
  type DbTarget,
  errors,
  type Flavor,
  fromDatabaseError,
  isDatabaseError,
  libpqConnectFailure,
  NO_CONNECTION,
  SERVER_CLOSED_CONNECTION,
} from './errors.ts';

export interface DatabaseOptions {
  readonly connectionString: string;
  readonly poolSize: number;
  /** Longest wait for a pooled connection before 504 PGRST003. */
  readonly acquisitionTimeoutMs: number;
  readonly idleTimeoutMs: number;
  readonly applicationName: string;
  readonly flavor: Flavor;
}

interface DeadConnection {
  readonly error: unknown;
  used: boolean;
}

const ACQUISITION_TIMEOUT = Symbol('acquisition timeout');

export class Database {
  readonly target: DbTarget;
  readonly #options: DatabaseOptions;
  #pool: pg.Pool;
  readonly #dead: DeadConnection[] = [];
  readonly #ended = new WeakSet<pg.ClientBase>();
  #brokenConnections = 0;

  constructor(options: DatabaseOptions) {
    this.#options = options;
    this.target = dbTarget(options.connectionString);
    this.#pool = this.#createPool();
  }

  /** Pooled connections seen dying (terminated, link lost), for tests that wait on it. */
  get brokenConnections(): number {
    return this.#brokenConnections;
  }

  #createPool(): pg.Pool {
    const pool = new pg.Pool({
      connectionString: this.#options.connectionString,
      max: this.#options.poolSize,
      idleTimeoutMillis: this.#options.idleTimeoutMs,
      // A safety net for a database that never answers; PGRST003 is decided in acquire().
      connectionTimeoutMillis: this.#options.acquisitionTimeoutMs + 1000,
      application_name: this.#options.applicationName,
    });
    pool.on('connect', (client) => {
      client.once('end', () => this.#ended.add(client));
      // pg-pool listens for errors only while a client is idle; one that dies during a request
      // would otherwise crash the process. The request learns of it from its failed query.
      client.on('error', () => {});
    });
    // Without this listener a connection dying while idle would crash the process.
    pool.on('error', (error) => {
      this.#brokenConnections++;
      if (pool === this.#pool) this.#dead.push({ error, used: false });
    });
    return pool;
  }

  /** A connection for one request, or PostgREST's error for why there is none. */
  async acquire(): Promise<pg.PoolClient> {
    const dead = this.#dead.at(-1);
    if (dead !== undefined) throw this.#use(dead);
    const pool = this.#pool;
    if (pool.idleCount > 0)
      return pool.connect().catch((error: unknown) => Promise.reject(this.#connectFailure(error)));
    let timer: NodeJS.Timeout | undefined;
    const connecting = pool.connect();
    try {
      return await Promise.race([
        connecting,
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(ACQUISITION_TIMEOUT), this.#options.acquisitionTimeoutMs);
        }),
      ]);
    } catch (error: unknown) {
      if (error !== ACQUISITION_TIMEOUT) throw this.#connectFailure(error);
      // The wait cannot be withdrawn from the pool; hand the connection back once it comes.
      connecting.then((client) => client.release()).catch(() => {});
      throw errors.poolTimeout();
    } finally {
      clearTimeout(timer);
    }
  }

  #use(dead: DeadConnection): ApiError {
    const firstUse = !dead.used;
    dead.used = true;
    if (firstUse && isDatabaseError(dead.error))
      return fromDatabaseError(dead.error, false, this.#options.flavor);
    return errors.client(firstUse ? SERVER_CLOSED_CONNECTION : NO_CONNECTION);
  }

  #connectFailure(error: unknown): ApiError {
    return errors.connection(this.#options.flavor, libpqConnectFailure(error, this.target));
  }

  /** Returns a request's connection; one that died stays "in the pool" as a dead connection. */
  release(client: pg.PoolClient, failure: unknown): void {
    if (!this.#ended.has(client)) {
      client.release(brokenBy(failure));
      return;
    }
    this.#brokenConnections++;
    client.release(true);
    if (isDatabaseError(failure)) this.#dead.push({ error: failure, used: true });
  }

  /** PostgREST's answer for an error thrown while a request used its connection. */
  failure(error: unknown, authenticated: boolean): ApiError {
    if (isDatabaseError(error)) return fromDatabaseError(error, authenticated, this.#options.flavor);
    return errors.client(SERVER_CLOSED_CONNECTION);
  }

  /** Runs `work` on a pooled connection without the request-level error mapping. */
  async withClient<T>(work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    const client = await this.#pool.connect();
    let failure: unknown;
    try {
      return await work(client);
    } catch (error: unknown) {
      failure = error;
      throw error;
    } finally {
      client.release(brokenBy(failure));
    }
  }

  /** Drops every pooled connection (PostgREST's pool release) and forgets dead ones. */
  flush(): void {
    const old = this.#pool;
    this.#pool = this.#createPool();
    this.#dead.length = 0;
    old.end().catch(() => {});
  }

  async close(): Promise<void> {
    this.#dead.length = 0;
    await this.#pool.end();
  }
}

/** The error to destroy a connection with: one that did not come from PostgreSQL or PostgREST. */
function brokenBy(failure: unknown): Error | undefined {
  return failure instanceof Error && !isDatabaseError(failure) && !(failure instanceof ApiError)
    ? failure
    : undefined;
}

/** Host and port (or Unix socket) from a postgres:// URI, for libpq-style messages. */
export function dbTarget(connectionString: string): DbTarget {
  const url = new URL(connectionString);
  const host = url.searchParams.get('host') ?? decodeURIComponent(url.hostname);
  const port = Number(url.port || url.searchParams.get('port') || 5432);
  if (host === '' || host.startsWith('/')) {
    return { socket: `${host || '/var/run/postgresql'}/.s.PGSQL.${port}` };
  }
  return { host, port };
}
