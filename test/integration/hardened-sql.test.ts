// sql/install-hardened.sql behind the PostgREST-compatible server with JWT role switching: the
// function runs as a separate owner role, the API role can enqueue through it and do nothing
// else to the queue, anonymous callers and other roles are refused as PostgREST refuses them,
// and oversized or unlisted messages come back as 4xx answers that a real bridge dead-letters.
//
// Roles are cluster-wide, so this file names its own with a random suffix and drops them at
// the end; another file running at the same time never sees them.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { SignJWT } from 'jose';
import type { App } from '../../src/app.ts';
import { classify, type OutcomeKind } from '../../src/postgrest/classify.ts';
import { interpretResponse } from '../../src/postgrest/client.ts';
import { startApp } from '../support/app.ts';
import {
  adminPool,
  asRole,
  connectionString,
  createScratchDatabase,
  ensureRoles,
  INSTALL_SQL,
  isPgError,
  PGQUEUER_SCHEMA_SQL,
  runPsql,
  type ScratchDatabase,
  UNINSTALL_SQL,
} from '../support/pg.ts';
import { type HttpAnswer, httpRequest } from '../support/postgrest/recordings.ts';
import { type PostgrestServer, startPostgrestServer } from '../support/postgrest/server.ts';
import { amqpUrl, TestBroker, uniqueName, waitFor } from '../support/rabbit.ts';

const HARDENED_SQL = fileURLToPath(new URL('../../sql/install-hardened.sql', import.meta.url));
const SIGNATURE = '(text, bytea, integer, interval, text, jsonb)';
const MIB = 1024 * 1024;

const suffix = randomBytes(4).toString('hex');
const ROLES = {
  owner: `pgq_hard_owner_${suffix}`,
  api: `pgq_hard_api_${suffix}`,
  other: `pgq_hard_other_${suffix}`,
  anon: `pgq_hard_anon_${suffix}`,
  member: `pgq_hard_member_${suffix}`,
  authenticator: `pgq_hard_auth_${suffix}`,
} as const;
const AUTHENTICATOR = { user: ROLES.authenticator, password: randomBytes(12).toString('hex') };
const JWT_SECRET = randomBytes(24).toString('hex');

interface ProcRow {
  security_definer: boolean;
  config: string[] | null;
  owner: string;
  acl: Array<{ grantee: string; privilege: string }>;
}

/** The function's security-relevant attributes as the catalog records them. */
async function procAttributes(db: ScratchDatabase, fn: string): Promise<ProcRow | undefined> {
  const { rows } = await db.pool.query<ProcRow>(
    `SELECT p.prosecdef AS security_definer, p.proconfig AS config, p.proowner::regrole::text AS owner,
            coalesce((SELECT json_agg(json_build_object(
                        'grantee', CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END,
                        'privilege', a.privilege_type))
                      FROM aclexplode(p.proacl) a), '[]') AS acl
     FROM pg_proc p WHERE p.oid = to_regprocedure($1)`,
    [`${fn}${SIGNATURE}`],
  );
  const row = rows[0];
  return row === undefined
    ? undefined
    : { ...row, acl: row.acl.sort((a, b) => a.grantee.localeCompare(b.grantee)) };
}

/** What install-hardened.sql makes of the function, wherever it is installed. */
const HARDENED_ATTRIBUTES = {
  security_definer: true,
  config: ['search_path=pg_catalog, pg_temp'],
  owner: ROLES.owner,
  acl: [
    { grantee: ROLES.api, privilege: 'EXECUTE' },
    { grantee: ROLES.owner, privilege: 'EXECUTE' },
  ].sort((a, b) => a.grantee.localeCompare(b.grantee)),
};

function permissionDenied(pattern: RegExp): (error: unknown) => boolean {
  return (error) => {
    assert.ok(isPgError(error, '42501'), String(error));
    assert.match((error as Error).message, pattern);
    return true;
  };
}

/** PGQueuer's schema in `schema`, with the grants a least-privilege owner role needs. */
async function loadQueue(
  db: ScratchDatabase,
  names: { schema: string; queue: string; log: string } = {
    schema: 'public',
    queue: 'pgqueuer',
    log: 'pgqueuer_log',
  },
): Promise<void> {
  const ddl = await readFile(PGQUEUER_SCHEMA_SQL, 'utf8');
  const schema = `"${names.schema.replaceAll('"', '""')}"`;
  await db.pool.query(`BEGIN; SET LOCAL search_path = ${schema}; ${ddl}; COMMIT;`);
  if (names.queue !== 'pgqueuer')
    await db.pool.query(`ALTER TABLE ${schema}.pgqueuer RENAME TO ${names.queue}`);
  if (names.log !== 'pgqueuer_log')
    await db.pool.query(`ALTER TABLE ${schema}.pgqueuer_log RENAME TO ${names.log}`);
  const { rows } = await db.pool.query<{ seq: string }>(`SELECT pg_get_serial_sequence($1, 'id') AS seq`, [
    `${schema}.${names.queue}`,
  ]);
  await db.pool.query(
    `GRANT USAGE ON SCHEMA ${schema} TO ${ROLES.owner};
     GRANT SELECT, INSERT ON TABLE ${schema}.${names.queue} TO ${ROLES.owner};
     GRANT INSERT ON TABLE ${schema}.${names.log} TO ${ROLES.owner};
     GRANT USAGE ON SEQUENCE ${rows[0]?.seq} TO ${ROLES.owner};`,
  );
}

function token(role: string): Promise<string> {
  return new SignJWT({ role })
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setIssuedAt()
    .setExpirationTime('1h')
    .sign(new TextEncoder().encode(JWT_SECRET));
}

interface CallOptions {
  readonly token?: string;
  readonly fn?: string;
  readonly schema?: string;
}

function call(server: PostgrestServer, body: unknown, options: CallOptions = {}): Promise<HttpAnswer> {
  const headers: Record<string, string> = { 'Content-Type': 'application/json', Connection: 'close' };
  if (options.token !== undefined) headers.Authorization = `Bearer ${options.token}`;
  if (options.schema !== undefined) headers['Content-Profile'] = options.schema;
  return httpRequest(server.port, {
    method: 'POST',
    path: `/rpc/${options.fn ?? 'fn_pgqueuer_enqueue'}`,
    headers,
    body: JSON.stringify(body),
  });
}

/** What the bridge would do with this answer. */
function outcomeOf(answer: HttpAnswer): OutcomeKind {
  const retryAfter = answer.headers['retry-after'];
  const result = interpretResponse(
    answer.status,
    answer.body,
    Array.isArray(retryAfter) ? retryAfter[0] : retryAfter,
  );
  return classify(result, { hasDedupeKey: false, dedupeConstraint: 'pgqueuer_unique_dedupe_key' }).kind;
}

function errorBody(answer: HttpAnswer): Record<string, unknown> {
  return JSON.parse(answer.body) as Record<string, unknown>;
}

function hex(bytes: Buffer): string {
  return `\\x${bytes.toString('hex')}`;
}

async function countRows(db: ScratchDatabase, table: string): Promise<number> {
  const { rows } = await db.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${table}`);
  return rows[0]?.n ?? -1;
}

describe('sql/install-hardened.sql', { timeout: 120_000 }, () => {
  const databases: ScratchDatabase[] = [];
  const servers: PostgrestServer[] = [];
  let apiToken: string;
  let otherToken: string;

  async function scratch(prefix: string): Promise<ScratchDatabase> {
    const db = await createScratchDatabase(prefix, { schema: false, install: false });
    databases.push(db);
    return db;
  }

  async function serve(
    db: ScratchDatabase,
    schemas: readonly string[] = ['public'],
  ): Promise<PostgrestServer> {
    const server = await startPostgrestServer({
      dbUri: connectionString(db.name, AUTHENTICATOR),
      schemas,
      anonRole: ROLES.anon,
      jwtSecret: JWT_SECRET,
      applicationName: `pgrst-hardened-${suffix}`,
    });
    servers.push(server);
    return server;
  }

  before(async () => {
    await ensureRoles([
      { name: ROLES.owner, login: false },
      { name: ROLES.api },
      { name: ROLES.other },
      { name: ROLES.anon },
      { name: ROLES.member, memberOf: [ROLES.owner] },
      {
        name: ROLES.authenticator,
        login: true,
        inherit: false,
        ...AUTHENTICATOR,
        memberOf: [ROLES.api, ROLES.other, ROLES.anon],
      },
    ]);
    apiToken = await token(ROLES.api);
    otherToken = await token(ROLES.other);
  });

  after(async () => {
    await Promise.all(servers.map((server) => server.close()));
    await Promise.all(databases.map((db) => db.drop()));
    const admin = adminPool();
    try {
      await admin.query(`DROP ROLE IF EXISTS ${Object.values(ROLES).join(', ')}`);
    } finally {
      await admin.end();
    }
  });

  describe('default names, an allow-list and the default limits', () => {
    let db: ScratchDatabase;
    let server: PostgrestServer;

    before(async () => {
      db = await scratch('hardened_default');
      await loadQueue(db);
      // Installed plain first, as an existing deployment would be: the hardened install must
      // take back the table grants the plain one gave the API role.
      await runPsql(db.name, INSTALL_SQL, { api_role: ROLES.api });
      const variables = {
        api_role: ROLES.api,
        owner_role: ROLES.owner,
        allowed_entrypoints: 'fetch, resize,report_*',
      };
      for (let run = 0; run < 2; run++) {
        const { stderr } = await runPsql(db.name, HARDENED_SQL, variables);
        assert.equal(stderr, '', 'a least-privilege owner draws no warning');
      }
      server = await serve(db);
    });

    test('runs as the owner role with a fixed search_path, and only the API role may execute it', async () => {
      assert.deepEqual(await procAttributes(db, 'public.fn_pgqueuer_enqueue'), HARDENED_ATTRIBUTES);
      const { rows } = await db.pool.query(
        `SELECT has_function_privilege($1, $3, 'EXECUTE') AS other, has_function_privilege($2, $3, 'EXECUTE') AS anon`,
        [ROLES.other, ROLES.anon, `public.fn_pgqueuer_enqueue${SIGNATURE}`],
      );
      assert.deepEqual(rows, [{ other: false, anon: false }]);
    });

    test('the API role has no privilege on the queue tables or the id sequence', async () => {
      const { rows } = await db.pool.query(
        `SELECT has_table_privilege($1, 'public.pgqueuer', 'SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER') AS queue,
                has_any_column_privilege($1, 'public.pgqueuer', 'SELECT, INSERT, UPDATE, REFERENCES') AS queue_columns,
                has_table_privilege($1, 'public.pgqueuer_log', 'SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER') AS log,
                has_sequence_privilege($1, 'public.pgqueuer_id_seq', 'USAGE, SELECT, UPDATE') AS sequence`,
        [ROLES.api],
      );
      assert.deepEqual(rows, [{ queue: false, queue_columns: false, log: false, sequence: false }]);
      await assert.rejects(
        asRole(db, ROLES.api, 'SELECT * FROM public.pgqueuer'),
        permissionDenied(/permission denied for table pgqueuer$/),
      );
      await assert.rejects(
        asRole(
          db,
          ROLES.api,
          `INSERT INTO public.pgqueuer (priority, entrypoint, status) VALUES (0, 'x', 'queued')`,
        ),
        permissionDenied(/permission denied for table pgqueuer$/),
      );
      await assert.rejects(
        asRole(db, ROLES.api, `UPDATE public.pgqueuer_log SET aggregated = true`),
        permissionDenied(/permission denied for table pgqueuer_log$/),
      );
      await assert.rejects(
        asRole(db, ROLES.api, `SELECT nextval('public.pgqueuer_id_seq')`),
        permissionDenied(/permission denied for sequence pgqueuer_id_seq$/),
      );
    });

    test('the API role enqueues through PostgREST: 200 with the id, the job and its log row', async () => {
      const answer = await call(
        server,
        {
          entrypoint: 'fetch',
          payload: hex(Buffer.from('hello')),
          priority: 5,
          execute_after: '10 seconds',
          dedupe_key: 'hardened-1',
          headers: { trace: 't' },
        },
        { token: apiToken },
      );
      assert.equal(answer.status, 200, answer.body);
      assert.match(answer.body, /^\d+$/);
      assert.equal(outcomeOf(answer), 'enqueued');
      const { rows } = await db.pool.query(
        `SELECT entrypoint, priority, encode(payload, 'escape') AS payload, (execute_after - created)::text AS delay,
                dedupe_key, headers, status::text
         FROM public.pgqueuer WHERE id = $1`,
        [answer.body],
      );
      assert.deepEqual(rows, [
        {
          entrypoint: 'fetch',
          priority: 5,
          payload: 'hello',
          delay: '00:00:10',
          dedupe_key: 'hardened-1',
          headers: { trace: 't' },
          status: 'queued',
        },
      ]);
      const log = await db.pool.query(
        'SELECT status::text, entrypoint, priority FROM public.pgqueuer_log WHERE job_id = $1',
        [answer.body],
      );
      assert.deepEqual(log.rows, [{ status: 'queued', entrypoint: 'fetch', priority: 5 }]);

      const duplicate = await call(
        server,
        { entrypoint: 'fetch', dedupe_key: 'hardened-1' },
        { token: apiToken },
      );
      assert.equal(duplicate.status, 409, 'the dedupe key works as in the plain install');
      assert.equal(errorBody(duplicate).code, '23505');
    });

    test('an anonymous call gets 401 42501, which the bridge treats as an endpoint fault', async () => {
      const answer = await call(server, { entrypoint: 'fetch' });
      assert.equal(answer.status, 401);
      assert.deepEqual(errorBody(answer), {
        code: '42501',
        details: null,
        hint: null,
        message: 'permission denied for function fn_pgqueuer_enqueue',
      });
      assert.equal(outcomeOf(answer), 'endpoint_fault');
    });

    test('a JWT for a role without EXECUTE gets 403 42501', async () => {
      const answer = await call(server, { entrypoint: 'fetch' }, { token: otherToken });
      assert.equal(answer.status, 403);
      assert.equal(errorBody(answer).code, '42501');
      assert.equal(errorBody(answer).message, 'permission denied for function fn_pgqueuer_enqueue');
      assert.equal(outcomeOf(answer), 'endpoint_fault');
    });

    test('a payload over 1 MiB is 413 PT413, which the bridge dead-letters', async () => {
      const jobsBefore = await countRows(db, 'public.pgqueuer');
      const atLimit = await call(
        server,
        { entrypoint: 'fetch', payload: hex(Buffer.alloc(MIB, 1)) },
        { token: apiToken },
      );
      assert.equal(atLimit.status, 200, 'exactly the limit is accepted');
      const over = await call(
        server,
        { entrypoint: 'fetch', payload: hex(Buffer.alloc(MIB + 1, 1)) },
        { token: apiToken },
      );
      assert.equal(over.status, 413);
      assert.equal(over.statusMessage, 'payload too large: 1048577 bytes, the limit is 1048576 bytes');
      assert.deepEqual(errorBody(over), {
        code: 'PT413',
        message: 'payload too large: 1048577 bytes, the limit is 1048576 bytes',
        details: `The job for entrypoint 'fetch' was refused by public.fn_pgqueuer_enqueue.`,
        hint: 'Send less data, e.g. store large content elsewhere and enqueue a reference to it; the limit is max_payload_bytes of sql/install-hardened.sql.',
      });
      assert.equal(outcomeOf(over), 'rejected_by_rpc');
      assert.equal(await countRows(db, 'public.pgqueuer'), jobsBefore + 1);
    });

    test('headers over 64 kB of JSON are 413 PT413', async () => {
      const answer = await call(
        server,
        { entrypoint: 'fetch', headers: { blob: 'x'.repeat(64 * 1024) } },
        { token: apiToken },
      );
      assert.equal(answer.status, 413);
      const body = errorBody(answer);
      assert.equal(body.code, 'PT413');
      assert.equal(
        body.message,
        `headers too large: ${64 * 1024 + 12} bytes of JSON, the limit is 65536 bytes`,
      );
      assert.match(String(body.hint), /max_headers_bytes/);
      assert.equal(outcomeOf(answer), 'rejected_by_rpc');
    });

    test('an entrypoint outside the allow-list is 422 PT422; names are exact and * matches any rest', async () => {
      for (const entrypoint of ['resize', 'report_daily', 'report_']) {
        const answer = await call(server, { entrypoint }, { token: apiToken });
        assert.equal(answer.status, 200, `${entrypoint}: ${answer.body}`);
      }
      for (const entrypoint of ['fetchx', 'Fetch', 'report', 'reportXdaily', 'delete_everything']) {
        const answer = await call(server, { entrypoint }, { token: apiToken });
        assert.equal(answer.status, 422, `${entrypoint}: ${answer.body}`);
        assert.deepEqual(errorBody(answer), {
          code: 'PT422',
          message: `entrypoint not allowed: ${entrypoint}`,
          details: `Entrypoint '${entrypoint}' is not one of: fetch, resize, report_*.`,
          hint: "Check the entrypoint the publisher sent (or the source's entrypoint setting), or add it to allowed_entrypoints of sql/install-hardened.sql.",
        });
        assert.equal(outcomeOf(answer), 'rejected_by_rpc');
      }
      const controls = await call(server, { entrypoint: 'bad\r\nname' }, { token: apiToken });
      assert.equal(controls.status, 422);
      assert.equal(
        controls.statusMessage,
        'entrypoint not allowed: bad??name',
        'the reason phrase stays one line',
      );
      const { rows } = await db.pool.query(
        `SELECT count(*)::int AS n FROM public.pgqueuer WHERE entrypoint NOT IN ('fetch', 'resize', 'report_daily', 'report_')`,
      );
      assert.deepEqual(rows, [{ n: 0 }]);
    });

    test("a bridge with the API role's token enqueues valid messages and dead-letters the refused ones", async () => {
      const broker = await TestBroker.connect(amqpUrl());
      const queue = uniqueName('pgqb-hardened');
      const deadLetterQueue = `${queue}.dead`;
      let app: App | undefined;
      try {
        ({ app } = await startApp({
          amqp: {
            url: amqpUrl(),
            heartbeatSeconds: 5,
            reconnectInitialDelayMs: 100,
            reconnectMaxDelayMs: 2000,
          },
          postgrest: { url: server.url, timeoutMs: 5000, bearerToken: apiToken },
          sources: [{ queue }],
          retry: { initialDelayMs: 50, maxDelayMs: 1000 },
          shutdown: { graceMs: 5000 },
          http: { enabled: false },
          log: { level: 'silent' },
        }));
        const large = Buffer.alloc(MIB + 1, 7).toString('base64');
        await broker.publish(queue, [
          {
            body: '{"entrypoint":"fetch","payload":{"ok":true},"headers":{"mid":"hardened-ok"}}',
            options: { messageId: 'm-ok' },
          },
          { body: `{"entrypoint":"fetch","payload":"${large}"}`, options: { messageId: 'm-large' } },
          { body: '{"entrypoint":"drop_tables"}', options: { messageId: 'm-entrypoint' } },
        ]);
        const job = await waitFor(
          async () =>
            (
              await db.pool.query<{ entrypoint: string; payload: string }>(
                `SELECT entrypoint, convert_from(payload, 'UTF8') AS payload FROM public.pgqueuer WHERE headers->>'mid' = 'hardened-ok'`,
              )
            ).rows[0],
          { timeoutMs: 20_000, message: 'the valid message as a job' },
        );
        assert.deepEqual(job, { entrypoint: 'fetch', payload: '{"ok":true}' });

        const dead = new Map<string, Record<string, unknown>>();
        await waitFor(
          async () => {
            for (const message of await broker.drainQueue(deadLetterQueue)) {
              dead.set(String(message.properties.messageId), message.properties.headers ?? {});
            }
            return dead.size >= 2;
          },
          { timeoutMs: 20_000, message: 'two dead letters' },
        );
        assert.deepEqual([...dead.keys()].sort(), ['m-entrypoint', 'm-large']);
        const pick = (headers: Record<string, unknown> | undefined) =>
          Object.fromEntries(
            [
              'x-pgq-bridge-error-kind',
              'x-pgq-bridge-error-reason',
              'x-pgq-bridge-error-message',
              'x-pgq-bridge-http-status',
              'x-pgq-bridge-postgrest-code',
              'x-pgq-bridge-postgrest-details',
            ].map((name) => [name, headers?.[name]]),
          );
        assert.deepEqual(pick(dead.get('m-large')), {
          'x-pgq-bridge-error-kind': 'rejected_by_rpc',
          'x-pgq-bridge-error-reason': 'PT413',
          'x-pgq-bridge-error-message': 'payload too large: 1048577 bytes, the limit is 1048576 bytes',
          'x-pgq-bridge-http-status': 413,
          'x-pgq-bridge-postgrest-code': 'PT413',
          'x-pgq-bridge-postgrest-details': `The job for entrypoint 'fetch' was refused by public.fn_pgqueuer_enqueue.`,
        });
        assert.deepEqual(pick(dead.get('m-entrypoint')), {
          'x-pgq-bridge-error-kind': 'rejected_by_rpc',
          'x-pgq-bridge-error-reason': 'PT422',
          'x-pgq-bridge-error-message': 'entrypoint not allowed: drop_tables',
          'x-pgq-bridge-http-status': 422,
          'x-pgq-bridge-postgrest-code': 'PT422',
          'x-pgq-bridge-postgrest-details':
            "Entrypoint 'drop_tables' is not one of: fetch, resize, report_*.",
        });
        assert.match(
          String(dead.get('m-entrypoint')?.['x-pgq-bridge-postgrest-hint']),
          /allowed_entrypoints/,
        );
      } finally {
        await app?.stop();
        await broker.deleteQueues(queue, deadLetterQueue);
        await broker.close();
      }
    });
  });

  describe('custom names: api.enqueue_job on jobs.myq and jobs.myq_log, with a 2 kB limit and no allow-list', () => {
    let db: ScratchDatabase;
    let server: PostgrestServer;
    const variables = {
      api_schema: 'api',
      queue_schema: 'jobs',
      queue_table: 'myq',
      log_table: 'myq_log',
      function_name: 'enqueue_job',
      api_role: ROLES.api,
      owner_role: ROLES.owner,
      max_payload_bytes: '2kB',
    };

    before(async () => {
      db = await scratch('hardened_custom');
      // The API role gets USAGE on the function's schema only: the queue schema stays closed to it.
      await db.pool.query(`CREATE SCHEMA api; CREATE SCHEMA jobs; GRANT USAGE ON SCHEMA api TO ${ROLES.api};
                           GRANT CREATE ON SCHEMA api TO ${ROLES.owner};`);
      await loadQueue(db, { schema: 'jobs', queue: 'myq', log: 'myq_log' });
      for (let run = 0; run < 2; run++) await runPsql(db.name, HARDENED_SQL, variables);
      server = await serve(db, ['api']);
    });

    test('enqueues into the renamed tables through the api schema', async () => {
      const answer = await call(
        server,
        { entrypoint: 'anything.goes', payload: hex(Buffer.alloc(2048, 0xff)), priority: -3 },
        { token: apiToken, fn: 'enqueue_job' },
      );
      assert.equal(answer.status, 200, answer.body);
      const { rows } = await db.pool.query(
        `SELECT q.entrypoint, q.priority, octet_length(q.payload) AS bytes, l.status::text AS logged
         FROM jobs.myq q JOIN jobs.myq_log l ON l.job_id = q.id WHERE q.id = $1`,
        [answer.body],
      );
      assert.deepEqual(rows, [{ entrypoint: 'anything.goes', priority: -3, bytes: 2048, logged: 'queued' }]);
      assert.deepEqual(await procAttributes(db, 'api.enqueue_job'), HARDENED_ATTRIBUTES);
      const defaults = await db.pool.query(
        `SELECT to_regproc('public.fn_pgqueuer_enqueue') IS NULL AS absent`,
      );
      assert.deepEqual(defaults.rows, [{ absent: true }], 'nothing is installed under the default names');
    });

    test('refuses 2049 bytes with the configured limit in the answer', async () => {
      const answer = await call(
        server,
        { entrypoint: 'big', payload: hex(Buffer.alloc(2049)) },
        { token: apiToken, fn: 'enqueue_job' },
      );
      assert.equal(answer.status, 413);
      assert.equal(errorBody(answer).message, 'payload too large: 2049 bytes, the limit is 2048 bytes');
      assert.equal(errorBody(answer).details, `The job for entrypoint 'big' was refused by api.enqueue_job.`);
      assert.equal(outcomeOf(answer), 'rejected_by_rpc');
    });

    test('the API role cannot reach the queue schema, and other roles cannot call the function', async () => {
      await assert.rejects(
        asRole(db, ROLES.api, 'SELECT * FROM jobs.myq'),
        permissionDenied(/permission denied for schema jobs$/),
      );
      const other = await call(server, { entrypoint: 'x' }, { token: otherToken, fn: 'enqueue_job' });
      assert.equal(other.status, 403);
      assert.equal(errorBody(other).code, '42501');
      const anonymous = await call(server, { entrypoint: 'x' }, { fn: 'enqueue_job' });
      assert.equal(anonymous.status, 401);
      assert.equal(errorBody(anonymous).code, '42501');
    });

    test('sql/uninstall.sql removes the hardened function too', async () => {
      for (let run = 0; run < 2; run++) {
        await runPsql(db.name, UNINSTALL_SQL, { api_schema: 'api', function_name: 'enqueue_job' });
      }
      const { rows } = await db.pool.query('SELECT to_regprocedure($1) IS NULL AS gone', [
        `api.enqueue_job${SIGNATURE}`,
      ]);
      assert.deepEqual(rows, [{ gone: true }]);
    });
  });

  describe('unsafe or invalid settings stop the install before anything is created', () => {
    let db: ScratchDatabase;

    before(async () => {
      db = await scratch('hardened_refusals');
      await loadQueue(db);
    });

    const refusals: Array<[string, Record<string, string>, RegExp]> = [
      [
        'a missing api role',
        { api_role: `pgq_hard_missing_${suffix}` },
        /role "pgq_hard_missing_\w+" does not exist/,
      ],
      [
        'the api role as owner',
        { api_role: ROLES.api, owner_role: ROLES.api },
        /api role "pgq_hard_api_\w+" can act as owner role "pgq_hard_api_\w+"/,
      ],
      [
        'an api role that is a member of the owner',
        { api_role: ROLES.member, owner_role: ROLES.owner },
        /api role "pgq_hard_member_\w+" can act as owner role "pgq_hard_owner_\w+"/,
      ],
      [
        'an owner without the rights to enqueue',
        { api_role: ROLES.api, owner_role: ROLES.other },
        /owner role "pgq_hard_other_\w+" cannot enqueue into public\.pgqueuer/,
      ],
      [
        'a size that is no size',
        { api_role: ROLES.api, owner_role: ROLES.owner, max_payload_bytes: 'lots' },
        /max_payload_bytes must be a size from 1 byte to 1GB, not "lots"/,
      ],
      [
        'a zero size',
        { api_role: ROLES.api, owner_role: ROLES.owner, max_headers_bytes: '0' },
        /max_headers_bytes must be a size from 1 byte to 1GB, not "0"/,
      ],
      [
        'an allow-list without names',
        { api_role: ROLES.api, owner_role: ROLES.owner, allowed_entrypoints: ' , ,' },
        /allowed_entrypoints ", ," names no entrypoint/,
      ],
    ];
    for (const [what, variables, message] of refusals) {
      test(what, async () => {
        await assert.rejects(runPsql(db.name, HARDENED_SQL, variables), (error: unknown) => {
          assert.ok(error instanceof Error && 'stderr' in error);
          assert.match(String(error.stderr), message);
          return true;
        });
        const { rows } = await db.pool.query(
          `SELECT to_regproc('public.fn_pgqueuer_enqueue') IS NULL AS absent`,
        );
        assert.deepEqual(rows, [{ absent: true }]);
      });
    }

    test('a superuser owner (the default when a superuser owns the tables) installs with a warning', async () => {
      const { rows } = await db.pool.query<{ owner: string; superuser: boolean }>(
        `SELECT r.rolname AS owner, r.rolsuper AS superuser
         FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner WHERE c.oid = 'public.pgqueuer'::regclass`,
      );
      assert.equal(rows[0]?.superuser, true, 'the test tables belong to the superuser that created them');
      const { stderr } = await runPsql(db.name, HARDENED_SQL, { api_role: ROLES.api });
      assert.match(stderr, new RegExp(`WARNING: {2}owner role "${rows[0]?.owner}" is a superuser`));
      const attributes = await procAttributes(db, 'public.fn_pgqueuer_enqueue');
      assert.equal(attributes?.owner, rows[0]?.owner);
      const [job] = await asRole<{ id: string }>(
        db,
        ROLES.api,
        `SELECT public.fn_pgqueuer_enqueue('any') AS id`,
      );
      assert.match(String(job?.id), /^\d+$/, 'without an allow-list any entrypoint is accepted');
    });
  });
});
