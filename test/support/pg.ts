// PostgreSQL helpers for tests: connection settings from the libpq environment, throw-away
// databases with PGQueuer's schema and the enqueue function, and cluster-wide roles.
//
// Roles belong to the whole cluster while databases belong to one test file, and test files
// may run at the same time. So roles are only ever created or altered (never dropped) under
// one advisory lock, and every database gets a random name.

import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import pg from 'pg';

export const PGQUEUER_SCHEMA_SQL = fileURLToPath(new URL('./pgqueuer-schema.sql', import.meta.url));
export const INSTALL_SQL = fileURLToPath(new URL('../../sql/install.sql', import.meta.url));
export const UNINSTALL_SQL = fileURLToPath(new URL('../../sql/uninstall.sql', import.meta.url));
export const BATCH_INSTALL_SQL = fileURLToPath(new URL('../../sql/install-batch.sql', import.meta.url));
export const LEDGER_INSTALL_SQL = fileURLToPath(new URL('../../sql/install-ledger.sql', import.meta.url));

const DUPLICATE_OBJECT = '42710';
const UNIQUE_VIOLATION = '23505';
// Any constant will do; it only has to be the same in every test process.
const ROLES_LOCK_KEY = 74_210_001;

export interface PgSettings {
  readonly host: string;
  readonly port: number;
  readonly user: string;
  readonly password: string | undefined;
  /** Database used for administration (creating and dropping scratch databases). */
  readonly database: string;
}

/** Settings from PGHOST, PGPORT, PGUSER, PGPASSWORD and PGDATABASE, with local defaults. */
export function pgSettings(env: NodeJS.ProcessEnv = process.env): PgSettings {
  return {
    host: env.PGHOST || '127.0.0.1',
    port: Number(env.PGPORT || 5432),
    user: env.PGUSER || 'postgres',
    password: env.PGPASSWORD || undefined,
    database: env.PGDATABASE || 'postgres',
  };
}

export interface Credentials {
  readonly user: string;
  readonly password?: string | undefined;
}

/** A postgres:// URI for `database`, as the admin user unless other credentials are given. */
export function connectionString(database: string, credentials?: Credentials, port?: number): string {
  const settings = pgSettings();
  const user = credentials?.user ?? settings.user;
  const password = credentials === undefined ? settings.password : credentials.password;
  const auth =
    password === undefined
      ? encodeURIComponent(user)
      : `${encodeURIComponent(user)}:${encodeURIComponent(password)}`;
  const host = settings.host.startsWith('/') ? `localhost` : settings.host;
  const socket = settings.host.startsWith('/') ? `?host=${encodeURIComponent(settings.host)}` : '';
  return `postgresql://${auth}@${host}:${port ?? settings.port}/${encodeURIComponent(database)}${socket}`;
}

/** A pool on the admin database. The caller owns it and must `end()` it. */
export function adminPool(max = 2): pg.Pool {
  return new pg.Pool({ connectionString: connectionString(pgSettings().database), max });
}

async function withAdminClient<T>(work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: connectionString(pgSettings().database) });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}

export interface RoleSpec {
  readonly name: string;
  /** LOGIN or NOLOGIN; unset leaves an existing role as it is (a new one is NOLOGIN). */
  readonly login?: boolean;
  /** INHERIT or NOINHERIT (PostgREST's authenticator is usually NOINHERIT); unset leaves it. */
  readonly inherit?: boolean;
  readonly password?: string;
  /** Roles this role becomes a member of (GRANT <each> TO <name>). */
  readonly memberOf?: readonly string[];
}

/**
 * Creates missing roles and sets the attributes and memberships a spec names. Nothing is
 * taken away (no attribute reset, no membership revoked), because another test file may rely
 * on it.
 */
export async function ensureRoles(roles: readonly RoleSpec[]): Promise<void> {
  await withAdminClient(async (client) => {
    await client.query('BEGIN');
    try {
      await client.query('SELECT pg_advisory_xact_lock($1)', [ROLES_LOCK_KEY]);
      for (const role of roles) await ensureRole(client, role);
      await client.query('COMMIT');
    } catch (error: unknown) {
      await client.query('ROLLBACK');
      throw error;
    }
  });
}

async function ensureRole(client: pg.Client, role: RoleSpec): Promise<void> {
  const name = client.escapeIdentifier(role.name);
  await client.query('SAVEPOINT create_role');
  try {
    await client.query(`CREATE ROLE ${name}`);
    await client.query('RELEASE SAVEPOINT create_role');
  } catch (error: unknown) {
    // Another process may hold the lock on a different admin database; losing that race is fine.
    if (!isPgError(error, DUPLICATE_OBJECT) && !isPgError(error, UNIQUE_VIOLATION)) throw error;
    await client.query('ROLLBACK TO SAVEPOINT create_role');
  }
  const attributes: string[] = [];
  if (role.login !== undefined) attributes.push(role.login ? 'LOGIN' : 'NOLOGIN');
  if (role.inherit !== undefined) attributes.push(role.inherit ? 'INHERIT' : 'NOINHERIT');
  if (role.password !== undefined) attributes.push(`PASSWORD ${client.escapeLiteral(role.password)}`);
  if (attributes.length > 0) await client.query(`ALTER ROLE ${name} ${attributes.join(' ')}`);
  for (const group of role.memberOf ?? []) {
    await client.query(`GRANT ${client.escapeIdentifier(group)} TO ${name}`);
  }
}

/** Runs `sql` as `role` in a transaction that is committed. */
export async function asRole<T extends pg.QueryResultRow>(
  db: ScratchDatabase,
  role: string,
  sql: string,
  values: unknown[] = [],
): Promise<T[]> {
  const client = await db.pool.connect();
  try {
    await client.query('BEGIN');
    await client.query(`SET LOCAL ROLE ${client.escapeIdentifier(role)}`);
    const { rows } = await client.query<T>(sql, values);
    await client.query('COMMIT');
    return rows;
  } catch (error: unknown) {
    await client.query('ROLLBACK');
    throw error;
  } finally {
    client.release();
  }
}

export function isPgError(error: unknown, code: string): boolean {
  return error instanceof Error && 'code' in error && error.code === code;
}

/** Values for the psql variables of sql/install.sql; omitted ones take the script's defaults. */
export interface InstallVariables {
  readonly api_schema?: string;
  readonly queue_schema?: string;
  readonly queue_table?: string;
  readonly log_table?: string;
  readonly function_name?: string;
  readonly api_role?: string;
}

const execFileAsync = promisify(execFile);

/** Runs a SQL file with the psql binary, stopping at the first error. */
export async function runPsql(
  database: string,
  file: string,
  variables: Readonly<Record<string, string>> = {},
): Promise<{ stdout: string; stderr: string }> {
  const args = ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', connectionString(database), '-f', file];
  for (const [name, value] of Object.entries(variables)) args.push('-v', `${name}=${value}`);
  return execFileAsync('psql', args, { env: { ...process.env, PGAPPNAME: 'pgq-bridge-tests' } });
}

export interface ScratchDatabaseOptions {
  /** Load PGQueuer's schema (test/support/pgqueuer-schema.sql). Default true. */
  readonly schema?: boolean;
  /**
   * Run sql/install.sql with these variables (true = the script's defaults). Default true.
   * The api role (default pgqapi) is created first if it does not exist.
   */
  readonly install?: boolean | InstallVariables;
}

export interface ScratchDatabase {
  readonly name: string;
  /** URI for the admin user; use `connectionString(name, credentials)` for other roles. */
  readonly connectionString: string;
  /** Superuser pool on this database, ended by `drop()`. */
  readonly pool: pg.Pool;
  /** Ends the pool, terminates every other connection to the database and drops it. */
  drop(): Promise<void>;
}

export async function createScratchDatabase(
  prefix: string,
  options: ScratchDatabaseOptions = {},
): Promise<ScratchDatabase> {
  const name = `${prefix
    .toLowerCase()
    .replace(/[^a-z0-9_]/g, '_')
    .slice(0, 40)}_${randomBytes(5).toString('hex')}`;
  await withAdminClient((client) => client.query(`CREATE DATABASE ${client.escapeIdentifier(name)}`));
  const pool = new pg.Pool({ connectionString: connectionString(name), max: 4 });
  // An idle superuser connection can be killed by a test on purpose; that must not crash the run.
  pool.on('error', () => {});
  let dropping: Promise<void> | undefined;
  const drop = (): Promise<void> => {
    dropping ??= (async () => {
      await pool.end();
      await withAdminClient(async (client) => {
        await client.query(
          'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()',
          [name],
        );
        await client.query(`DROP DATABASE IF EXISTS ${client.escapeIdentifier(name)} WITH (FORCE)`);
      });
    })();
    return dropping;
  };
  try {
    if (options.schema ?? true) await pool.query(await readFile(PGQUEUER_SCHEMA_SQL, 'utf8'));
    const install = options.install ?? true;
    if (install !== false) {
      const variables: InstallVariables = install === true ? {} : install;
      await ensureRoles([{ name: variables.api_role ?? 'pgqapi' }]);
      await runPsql(name, INSTALL_SQL, { ...variables });
    }
  } catch (error: unknown) {
    await drop();
    throw error;
  }
  return { name, connectionString: connectionString(name), pool, drop };
}
