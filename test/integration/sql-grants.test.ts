// Least privilege of the plain installs (sql/install.sql, sql/install-batch.sql): the API role
// enqueues through PostgREST, single and bulk, and can do nothing else to the queue. A
// database first set up with the simplified grants of PGQueuer's PostgREST document (INSERT,
// SELECT, UPDATE on both tables, the id sequence) is the starting point, as an existing
// deployment would be: the installs must take those grants back, and the uninstalls must leave
// the API role holding nothing.
//
// The table checks run through the real psql binary, logged in as PostgREST's authenticator
// and switched to the API role as PostgREST switches per request: what psql may do there, a
// PostgREST table endpoint (GET /pgqueuer, PATCH, DELETE, POST) may do too.
//
// Roles are cluster-wide, so this file names its own with a random suffix and drops them.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import {
  adminPool,
  BATCH_INSTALL_SQL,
  connectionString,
  createScratchDatabase,
  ensureRoles,
  INSTALL_SQL,
  runPsql,
  type ScratchDatabase,
  UNINSTALL_SQL,
} from '../support/pg.ts';
import { httpRequest } from '../support/postgrest/recordings.ts';
import { type PostgrestServer, startPostgrestServer } from '../support/postgrest/server.ts';

const UNINSTALL_BATCH_SQL = fileURLToPath(new URL('../../sql/uninstall-batch.sql', import.meta.url));
const execFileAsync = promisify(execFile);

const suffix = randomBytes(4).toString('hex');
const API_ROLE = `pgq_grants_api_${suffix}`;
const AUTHENTICATOR = { user: `pgq_grants_auth_${suffix}`, password: randomBytes(12).toString('hex') };

/** What an API role may try on a table behind PostgREST, one statement per HTTP verb. */
const DIRECT_STATEMENTS: ReadonlyArray<readonly [string, string]> = [
  ['SELECT', 'SELECT * FROM public.pgqueuer'],
  ['SELECT', 'SELECT id FROM public.pgqueuer'],
  ['INSERT', `INSERT INTO public.pgqueuer (priority, entrypoint, status) VALUES (0, 'x', 'queued')`],
  ['UPDATE', 'UPDATE public.pgqueuer SET priority = 9'],
  ['DELETE', 'DELETE FROM public.pgqueuer'],
  ['TRUNCATE', 'TRUNCATE public.pgqueuer'],
  ['SELECT', 'SELECT * FROM public.pgqueuer_log'],
  [
    'INSERT',
    `INSERT INTO public.pgqueuer_log (job_id, status, priority, entrypoint) VALUES (1, 'queued', 0, 'x')`,
  ],
  ['UPDATE', 'UPDATE public.pgqueuer_log SET aggregated = true'],
  ['DELETE', 'DELETE FROM public.pgqueuer_log'],
  ['sequence', `SELECT nextval('public.pgqueuer_id_seq')`],
];

/** Runs one statement with psql as the authenticator switched to the API role. */
async function psqlAsApiRole(
  db: ScratchDatabase,
  statement: string,
): Promise<{ ok: boolean; stderr: string }> {
  const args = ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', connectionString(db.name, AUTHENTICATOR)];
  args.push('-c', `SET ROLE "${API_ROLE}"`, '-c', statement);
  try {
    await execFileAsync('psql', args);
    return { ok: true, stderr: '' };
  } catch (error: unknown) {
    return { ok: false, stderr: String((error as { stderr?: unknown }).stderr) };
  }
}

/** Every privilege the API role holds directly on an object of the database, as `object: privilege`. */
async function grantsOfApiRole(db: ScratchDatabase): Promise<string[]> {
  const { rows } = await db.pool.query<{ grant: string }>(
    `SELECT format('%s: %s', c.oid::regclass, a.privilege_type) AS grant
     FROM pg_class c, aclexplode(c.relacl) a
     WHERE a.grantee = $1::regrole
     UNION ALL
     SELECT format('%s: %s', p.oid::regprocedure, a.privilege_type)
     FROM pg_proc p, aclexplode(p.proacl) a
     WHERE a.grantee = $1::regrole
     ORDER BY 1`,
    [API_ROLE],
  );
  return rows.map((row) => row.grant);
}

function post(server: PostgrestServer, fn: string, body: unknown) {
  return httpRequest(server.port, {
    method: 'POST',
    path: `/rpc/${fn}`,
    headers: { 'Content-Type': 'application/json', Connection: 'close' },
    body: JSON.stringify(body),
  });
}

describe('least privilege of sql/install.sql and sql/install-batch.sql', { timeout: 120_000 }, () => {
  let db: ScratchDatabase;
  let server: PostgrestServer | undefined;
  const variables = { api_role: API_ROLE };

  before(async () => {
    await ensureRoles([
      { name: API_ROLE },
      { name: AUTHENTICATOR.user, login: true, inherit: false, ...AUTHENTICATOR, memberOf: [API_ROLE] },
    ]);
    db = await createScratchDatabase('sql_grants', { install: false });
    // The simplified grants of PGQueuer's PostgREST integration document.
    await db.pool.query(
      `GRANT INSERT, SELECT, UPDATE ON TABLE pgqueuer, pgqueuer_log TO "${API_ROLE}";
       GRANT USAGE, SELECT ON SEQUENCE pgqueuer_id_seq TO "${API_ROLE}";`,
    );
    for (let run = 0; run < 2; run++) {
      await runPsql(db.name, INSTALL_SQL, variables);
      await runPsql(db.name, BATCH_INSTALL_SQL, variables);
    }
    server = await startPostgrestServer({
      dbUri: connectionString(db.name, AUTHENTICATOR),
      anonRole: API_ROLE,
      applicationName: `pgrst-grants-${suffix}`,
    });
  });

  after(async () => {
    await server?.close();
    await db?.drop();
    const admin = adminPool();
    try {
      await admin.query(`DROP ROLE IF EXISTS "${AUTHENTICATOR.user}", "${API_ROLE}"`);
    } finally {
      await admin.end();
    }
  });

  test('the API role holds EXECUTE on the two functions and nothing else', async () => {
    assert.deepEqual(await grantsOfApiRole(db), [
      'fn_pgqueuer_enqueue(text,bytea,integer,interval,text,jsonb): EXECUTE',
      'fn_pgqueuer_enqueue_batch(jsonb): EXECUTE',
    ]);
  });

  for (const [privilege, statement] of DIRECT_STATEMENTS) {
    test(`psql as the API role is refused ${privilege}: ${statement}`, async () => {
      const { ok, stderr } = await psqlAsApiRole(db, statement);
      assert.equal(ok, false, `${statement} succeeded`);
      assert.match(stderr, /ERROR: {2}permission denied for (table|sequence) pgqueuer(_log|_id_seq)?\n/);
    });
  }

  test('enqueue through the RPC server still works, single and bulk', async () => {
    assert.ok(server !== undefined);
    const single = await post(server, 'fn_pgqueuer_enqueue', {
      entrypoint: 'rpc',
      payload: '\\x6869',
      dedupe_key: 'grants-1',
    });
    assert.equal(single.status, 200, single.body);
    assert.match(single.body, /^\d+$/);
    const bulk = await post(server, 'fn_pgqueuer_enqueue_batch', {
      jobs: [{ entrypoint: 'rpc' }, { entrypoint: 'rpc', dedupe_key: 'grants-1' }, { entrypoint: 'rpc-2' }],
    });
    assert.equal(bulk.status, 200, bulk.body);
    const results = JSON.parse(bulk.body) as unknown[];
    assert.equal(results.length, 3);
    assert.deepEqual(results[1], { duplicate: true });
    const { rows } = await db.pool.query<{ jobs: number; logs: number }>(
      `SELECT (SELECT count(*)::int FROM pgqueuer WHERE entrypoint LIKE 'rpc%') AS jobs,
              (SELECT count(*)::int FROM pgqueuer_log WHERE entrypoint LIKE 'rpc%') AS logs`,
    );
    assert.deepEqual(rows, [{ jobs: 3, logs: 3 }]);
  });

  test('psql as the API role enqueues through the functions', async () => {
    const single = await psqlAsApiRole(db, `SELECT public.fn_pgqueuer_enqueue('psql')`);
    assert.deepEqual(single, { ok: true, stderr: '' });
    const bulk = await psqlAsApiRole(
      db,
      `SELECT public.fn_pgqueuer_enqueue_batch('[{"entrypoint": "psql"}]')`,
    );
    assert.deepEqual(bulk, { ok: true, stderr: '' });
    const { rows } = await db.pool.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pgqueuer WHERE entrypoint = 'psql'`,
    );
    assert.deepEqual(rows, [{ n: 2 }]);
  });

  test('the uninstalls leave the API role holding nothing', async () => {
    await server?.close();
    server = undefined;
    await runPsql(db.name, UNINSTALL_BATCH_SQL);
    await runPsql(db.name, UNINSTALL_SQL);
    assert.deepEqual(await grantsOfApiRole(db), []);
  });
});
