// sql/install.sql and sql/uninstall.sql applied with psql, with the default names and with
// every name changed: the function enqueues like the user's, the API role can call it, PUBLIC
// cannot, running the scripts twice is harmless, and uninstall removes the function.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { after, describe, test } from 'node:test';
import {
  adminPool,
  asRole,
  createScratchDatabase,
  ensureRoles,
  INSTALL_SQL,
  isPgError,
  PGQUEUER_SCHEMA_SQL,
  runPsql,
  type ScratchDatabase,
  UNINSTALL_SQL,
} from '../support/pg.ts';

const SIGNATURE = '(text, bytea, integer, interval, text, jsonb)';
const ARGUMENTS =
  'entrypoint text, payload bytea DEFAULT NULL::bytea, priority integer DEFAULT 0, ' +
  "execute_after interval DEFAULT '00:00:00'::interval, dedupe_key text DEFAULT NULL::text, " +
  'headers jsonb DEFAULT NULL::jsonb';

interface Installation {
  /** Schema-qualified function name. */
  readonly fn: string;
  readonly queue: string;
  readonly log: string;
  readonly role: string;
}

async function assertInstalled(db: ScratchDatabase, installation: Installation): Promise<void> {
  const { fn, queue, log, role } = installation;
  const { rows } = await db.pool.query(
    `SELECT pg_get_function_arguments(p.oid) AS arguments, p.prorettype::regtype::text AS returns,
            l.lanname AS language, p.provolatile AS volatility, p.prosecdef AS security_definer,
            p.proconfig AS config, p.proowner = (SELECT relowner FROM pg_class WHERE oid = $3::text::regclass) AS owned_like_the_queue,
            p.proacl IS NOT NULL AND NOT EXISTS (
              SELECT FROM aclexplode(p.proacl) a WHERE a.grantee = 0 AND a.privilege_type = 'EXECUTE'
            ) AS public_cannot_execute,
            has_function_privilege($2, p.oid, 'EXECUTE') AS role_can_execute,
            has_table_privilege($2, $3, 'INSERT, SELECT, UPDATE, DELETE, TRUNCATE')
              OR has_table_privilege($2, $4, 'INSERT, SELECT, UPDATE, DELETE, TRUNCATE') AS role_can_touch_tables,
            has_sequence_privilege($2, pg_get_serial_sequence($3, 'id'), 'USAGE, SELECT, UPDATE') AS role_can_draw_ids
     FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
     WHERE p.oid = to_regprocedure($1)`,
    [`${fn}${SIGNATURE}`, role, queue, log],
  );
  assert.deepEqual(rows, [
    {
      arguments: ARGUMENTS,
      returns: 'bigint',
      language: 'plpgsql',
      volatility: 'v',
      security_definer: true,
      config: ['search_path=pg_catalog, pg_temp'],
      owned_like_the_queue: true,
      public_cannot_execute: true,
      role_can_execute: true,
      role_can_touch_tables: false,
      role_can_draw_ids: false,
    },
  ]);
}

async function assertEnqueues(db: ScratchDatabase, installation: Installation): Promise<void> {
  const { fn, queue, log, role } = installation;
  const [full] = await asRole<{ id: string }>(
    db,
    role,
    `SELECT ${fn}('full', '\\x68656c6c6f'::bytea, 5, '10 seconds', 'key-1', '{"trace": "t"}') AS id`,
  );
  const [minimal] = await asRole<{ id: string }>(db, role, `SELECT ${fn}('minimal') AS id`);
  assert.ok(full !== undefined && minimal !== undefined);
  const { rows } = await db.pool.query(
    `SELECT id::text, entrypoint, priority, encode(payload, 'hex') AS payload,
            (execute_after - created)::text AS delay, dedupe_key, headers, status::text, attempts
     FROM ${queue} ORDER BY id`,
  );
  assert.deepEqual(rows, [
    {
      id: full.id,
      entrypoint: 'full',
      priority: 5,
      payload: '68656c6c6f',
      delay: '00:00:10',
      dedupe_key: 'key-1',
      headers: { trace: 't' },
      status: 'queued',
      attempts: 0,
    },
    {
      id: minimal.id,
      entrypoint: 'minimal',
      priority: 0,
      payload: null,
      delay: '00:00:00',
      dedupe_key: null,
      headers: null,
      status: 'queued',
      attempts: 0,
    },
  ]);
  const logged = await db.pool.query(
    `SELECT job_id::text, status::text, entrypoint, priority FROM ${log} ORDER BY job_id`,
  );
  assert.deepEqual(logged.rows, [
    { job_id: full.id, status: 'queued', entrypoint: 'full', priority: 5 },
    { job_id: minimal.id, status: 'queued', entrypoint: 'minimal', priority: 0 },
  ]);
  await assert.rejects(
    asRole(db, role, `SELECT ${fn}('again', NULL, 0, '0', 'key-1')`),
    (error: unknown) => isPgError(error, '23505'),
    'the dedupe key is taken while the first job is queued',
  );
}

async function assertUninstalls(
  db: ScratchDatabase,
  fn: string,
  variables: Record<string, string>,
): Promise<void> {
  for (let run = 0; run < 2; run++) await runPsql(db.name, UNINSTALL_SQL, variables);
  const { rows } = await db.pool.query('SELECT to_regprocedure($1) IS NULL AS gone', [`${fn}${SIGNATURE}`]);
  assert.deepEqual(rows, [{ gone: true }]);
}

describe('sql/install.sql and sql/uninstall.sql', () => {
  const suffix = randomBytes(4).toString('hex');
  // Roles of this file only, with names no other file uses, so they can be dropped at the end.
  const apiRole = `pgq_sql_api_${suffix}`;
  const otherRole = `pgq_sql_other_${suffix}`;
  const databases: ScratchDatabase[] = [];

  async function scratch(prefix: string): Promise<ScratchDatabase> {
    const db = await createScratchDatabase(prefix, { schema: false, install: false });
    databases.push(db);
    return db;
  }

  after(async () => {
    await Promise.all(databases.map((db) => db.drop()));
    const admin = adminPool();
    try {
      await admin.query(`DROP ROLE IF EXISTS ${apiRole}, ${otherRole}`);
    } finally {
      await admin.end();
    }
  });

  test('default names: public.fn_pgqueuer_enqueue on public.pgqueuer, granted to pgqapi', async () => {
    await ensureRoles([{ name: 'pgqapi' }]);
    const db = await scratch('sql_defaults');
    await db.pool.query(await readFile(PGQUEUER_SCHEMA_SQL, 'utf8'));
    for (let run = 0; run < 2; run++) await runPsql(db.name, INSTALL_SQL);
    const installation = {
      fn: 'public.fn_pgqueuer_enqueue',
      queue: 'public.pgqueuer',
      log: 'public.pgqueuer_log',
      role: 'pgqapi',
    };
    await assertInstalled(db, installation);
    await assertEnqueues(db, installation);
    await assertUninstalls(db, installation.fn, {});
  });

  test('custom names: api.enqueue_job on jobs.myq and jobs.myq_log, granted to a role of the test', async () => {
    await ensureRoles([{ name: apiRole }, { name: otherRole }]);
    const db = await scratch('sql_custom');
    // The tables are renamed after creation, so their id sequence keeps the name pgqueuer_id_seq.
    await db.pool.query(
      `CREATE SCHEMA api; CREATE SCHEMA jobs;
       BEGIN; SET LOCAL search_path = jobs; ${await readFile(PGQUEUER_SCHEMA_SQL, 'utf8')}; COMMIT;
       ALTER TABLE jobs.pgqueuer RENAME TO myq; ALTER TABLE jobs.pgqueuer_log RENAME TO myq_log;
       GRANT USAGE ON SCHEMA api, jobs TO ${apiRole}, ${otherRole};`,
    );
    const variables = {
      api_schema: 'api',
      queue_schema: 'jobs',
      queue_table: 'myq',
      log_table: 'myq_log',
      function_name: 'enqueue_job',
      api_role: apiRole,
    };
    for (let run = 0; run < 2; run++) await runPsql(db.name, INSTALL_SQL, variables);
    const installation = { fn: 'api.enqueue_job', queue: 'jobs.myq', log: 'jobs.myq_log', role: apiRole };
    await assertInstalled(db, installation);
    await assertEnqueues(db, installation);
    await assert.rejects(
      asRole(db, otherRole, `SELECT api.enqueue_job('not allowed')`),
      (error: unknown) => isPgError(error, '42501'),
      'a role without the grant cannot enqueue',
    );
    const publicFunction = await db.pool.query(
      `SELECT to_regproc('public.fn_pgqueuer_enqueue') IS NULL AS absent`,
    );
    assert.deepEqual(publicFunction.rows, [{ absent: true }], 'nothing is installed under the default names');
    await assertUninstalls(db, installation.fn, { api_schema: 'api', function_name: 'enqueue_job' });
  });

  test('a missing api role stops the install before anything is created', async () => {
    const db = await scratch('sql_no_role');
    await db.pool.query(await readFile(PGQUEUER_SCHEMA_SQL, 'utf8'));
    const missing = `pgq_sql_missing_${suffix}`;
    await assert.rejects(runPsql(db.name, INSTALL_SQL, { api_role: missing }), (error: unknown) => {
      assert.ok(error instanceof Error && 'stderr' in error);
      assert.match(String(error.stderr), new RegExp(`role "${missing}" does not exist`));
      return true;
    });
    const { rows } = await db.pool.query(`SELECT to_regproc('public.fn_pgqueuer_enqueue') IS NULL AS absent`);
    assert.deepEqual(rows, [{ absent: true }]);
  });
});
