// sql/install-batch.sql and sql/uninstall-batch.sql: the bulk function called in SQL and
// through the PostgREST-compatible server, as the bridge calls it in batch mode. Results come
// back one per element in input order, every field is stored as the single function stores
// it, dedupe keys are skipped rather than failing the call, one bad element refuses the whole
// call with a 4xx that names it, and only the API role can call it.
//
// Roles are cluster-wide, so the roles this file makes up carry a random suffix and are
// dropped at the end.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { after, before, beforeEach, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { classify } from '../../src/postgrest/classify.ts';
import { interpretBatchResponse } from '../../src/postgrest/client.ts';
import {
  adminPool,
  asRole,
  createScratchDatabase,
  ensureRoles,
  INSTALL_SQL,
  PGQUEUER_SCHEMA_SQL,
  runPsql,
  type ScratchDatabase,
} from '../support/pg.ts';
import { type HttpAnswer, httpRequest } from '../support/postgrest/recordings.ts';
import { type PostgrestServer, startPostgrestServer } from '../support/postgrest/server.ts';

const INSTALL_BATCH_SQL = fileURLToPath(new URL('../../sql/install-batch.sql', import.meta.url));
const UNINSTALL_BATCH_SQL = fileURLToPath(new URL('../../sql/uninstall-batch.sql', import.meta.url));
const FUNCTION = 'fn_pgqueuer_enqueue_batch';
const API_ROLE = 'pgqapi';
const suffix = randomBytes(4).toString('hex');
const OTHER_ROLE = `pgq_batch_other_${suffix}`;
const CUSTOM_ROLE = `pgq_batch_api_${suffix}`;
const ELEMENT_HINT = 'Correct or leave out that element; the others can be sent again as they are.';

/** One element's result, as the bridge reads it: the id as text, so every digit is kept. */
type BatchResult = { readonly id: string } | 'duplicate';

/**
 * Results from the function's text, which must be exactly jsonb's rendering of
 * `[{"id": <digits>} | {"duplicate": true}, ...]`.
 */
function parseResults(text: string): BatchResult[] {
  assert.ok(text.startsWith('[') && text.endsWith(']'), `not an array: ${text.slice(0, 200)}`);
  if (text === '[]') return [];
  return text
    .slice(1, -1)
    .split(', ')
    .map((item) => {
      if (item === '{"duplicate": true}') return 'duplicate';
      const id = /^\{"id": (\d+)\}$/.exec(item)?.[1];
      assert.ok(id !== undefined, `unexpected result ${item}`);
      return { id };
    });
}

function idOf(result: BatchResult | undefined): string {
  assert.ok(typeof result === 'object', `expected an id, got ${String(result)}`);
  return result.id;
}

/** Ids drawn from the sequence in input order, with no other caller drawing meanwhile. */
function assertConsecutive(ids: readonly string[]): void {
  for (let i = 1; i < ids.length; i++) {
    assert.equal(BigInt(ids[i] ?? ''), BigInt(ids[i - 1] ?? '') + 1n, `id of element ${i}`);
  }
}

function jobsBody(elements: readonly string[]): string {
  return `{"jobs":[${elements.join(',')}]}`;
}

async function callSql(
  db: ScratchDatabase,
  jobs: string,
  fn = `public.${FUNCTION}`,
  role = API_ROLE,
): Promise<string> {
  const [row] = await asRole<{ result: string }>(db, role, `SELECT ${fn}($1::jsonb)::text AS result`, [jobs]);
  assert.ok(row !== undefined);
  return row.result;
}

function post(server: PostgrestServer, body: string, fn = FUNCTION): Promise<HttpAnswer> {
  return httpRequest(server.port, {
    method: 'POST',
    path: `/rpc/${fn}`,
    headers: { 'Content-Type': 'application/json', Connection: 'close' },
    body,
  });
}

/** A 200 answer's results; the body is the function's jsonb, bare, as PostgREST prints a scalar. */
async function postJobs(server: PostgrestServer, elements: readonly string[]): Promise<BatchResult[]> {
  const answer = await post(server, jobsBody(elements));
  assert.equal(answer.status, 200, answer.body);
  assert.equal(answer.headers['content-type'], 'application/json; charset=utf-8');
  return parseResults(answer.body);
}

async function counts(db: ScratchDatabase): Promise<{ jobs: number; logs: number }> {
  const { rows } = await db.pool.query<{ jobs: number; logs: number }>(
    'SELECT (SELECT count(*)::int FROM pgqueuer) AS jobs, (SELECT count(*)::int FROM pgqueuer_log) AS logs',
  );
  assert.ok(rows[0] !== undefined);
  return rows[0];
}

interface BadElement {
  readonly name: string;
  /** JSON text of the element, sent as element 2 of 4. */
  readonly element: string;
  readonly code: string;
  /** The message after `jobs[2]`. */
  readonly message: string;
}

const BAD_ELEMENTS: readonly BadElement[] = [
  {
    name: 'interval text PostgreSQL cannot read',
    element: '{"entrypoint":"e","execute_after":"ten seconds"}',
    code: '22007',
    message: '.execute_after: invalid input syntax for type interval: "ten seconds"',
  },
  {
    name: 'interval out of range',
    element: '{"entrypoint":"e","execute_after":"999999999999 years"}',
    code: '22015',
    message: '.execute_after: interval field value out of range: "999999999999 years"',
  },
  {
    name: 'execute_after beyond the last timestamp',
    element: '{"entrypoint":"e","execute_after":"1000000 years"}',
    code: '22008',
    message: '.execute_after: timestamp out of range',
  },
  {
    name: 'bad hex digit',
    element: String.raw`{"entrypoint":"e","payload":"\\x0Z"}`,
    code: '22023',
    message: '.payload: invalid hexadecimal digit: "Z"',
  },
  {
    name: 'odd number of hex digits',
    element: String.raw`{"entrypoint":"e","payload":"\\x123"}`,
    code: '22023',
    message: '.payload: invalid hexadecimal data: odd number of digits',
  },
  {
    name: 'lone backslash in escape-format bytea',
    element: String.raw`{"entrypoint":"e","payload":"a\\qb"}`,
    code: '22P02',
    message: '.payload: invalid input syntax for type bytea',
  },
  {
    name: 'priority out of range',
    element: '{"entrypoint":"e","priority":3000000000}',
    code: '22003',
    message: '.priority: value "3000000000" is out of range for type integer',
  },
  {
    name: 'fractional priority',
    element: '{"entrypoint":"e","priority":5.5}',
    code: '22P02',
    message: '.priority: invalid input syntax for type integer: "5.5"',
  },
  {
    name: 'boolean priority',
    element: '{"entrypoint":"e","priority":true}',
    code: '22P02',
    message: '.priority: invalid input syntax for type integer: "true"',
  },
  {
    name: 'missing entrypoint',
    element: String.raw`{"payload":"\\x00"}`,
    code: 'P0001',
    message: '.entrypoint: missing',
  },
  {
    name: 'null entrypoint',
    element: '{"entrypoint":null}',
    code: 'P0001',
    message: '.entrypoint: expected a string, got null',
  },
  {
    name: 'numeric entrypoint',
    element: '{"entrypoint":1e2}',
    code: 'P0001',
    message: '.entrypoint: expected a string, got number',
  },
  {
    name: 'payload as a JSON object',
    element: '{"entrypoint":"e","payload":{"a": 1}}',
    code: 'P0001',
    message: '.payload: expected a string or null, got object',
  },
  {
    name: 'payload as a number',
    element: '{"entrypoint":"e","payload":12}',
    code: 'P0001',
    message: '.payload: expected a string or null, got number',
  },
  {
    name: 'numeric dedupe key',
    element: '{"entrypoint":"e","dedupe_key":12345678901234567890}',
    code: 'P0001',
    message: '.dedupe_key: expected a string or null, got number',
  },
  {
    name: 'null priority',
    element: '{"entrypoint":"e","priority":null}',
    code: 'P0001',
    message: '.priority: must not be null (leave it out for the default 0)',
  },
  {
    name: 'null execute_after',
    element: '{"entrypoint":"e","execute_after":null}',
    code: 'P0001',
    message: '.execute_after: must not be null (leave it out to run at once)',
  },
  { name: 'a string', element: '"fetch"', code: 'P0001', message: ': expected an object, got string' },
  { name: 'a number', element: '42', code: 'P0001', message: ': expected an object, got number' },
  { name: 'null', element: 'null', code: 'P0001', message: ': expected an object, got null' },
  {
    name: 'an array',
    element: '[{"entrypoint":"e"}]',
    code: 'P0001',
    message: ': expected an object, got array',
  },
  {
    name: 'headers that are an array',
    element: '{"entrypoint":"e","headers":[1]}',
    code: 'P0001',
    message: '.headers: expected an object or null, got array',
  },
  {
    name: 'headers that are an object encoded as a string',
    element: '{"entrypoint":"e","headers":"{\\"a\\":1}"}',
    code: 'P0001',
    message: '.headers: expected an object or null, got string',
  },
  {
    name: 'headers that are a number',
    element: '{"entrypoint":"e","headers":5}',
    code: 'P0001',
    message: '.headers: expected an object or null, got number',
  },
  {
    name: 'an unknown key',
    element: '{"entrypoint":"e","delay":"5 seconds"}',
    code: 'P0001',
    message:
      ': unknown key "delay" (a job takes entrypoint, payload, priority, execute_after, dedupe_key, headers)',
  },
  {
    name: 'a key in the wrong case',
    element: '{"entrypoint":"e","Priority":1}',
    code: 'P0001',
    message:
      ': unknown key "Priority" (a job takes entrypoint, payload, priority, execute_after, dedupe_key, headers)',
  },
];

// Runs after both suites, whose databases are dropped by then.
after(async () => {
  const admin = adminPool();
  try {
    await admin.query(`DROP ROLE IF EXISTS ${OTHER_ROLE}, ${CUSTOM_ROLE}`);
  } finally {
    await admin.end();
  }
});

describe('sql/install-batch.sql with the default names', { timeout: 120_000 }, () => {
  let db: ScratchDatabase;
  let server: PostgrestServer;
  let outsiderServer: PostgrestServer;

  before(async () => {
    await ensureRoles([{ name: API_ROLE }, { name: OTHER_ROLE }]);
    // PGQueuer's schema and the single function (sql/install.sql), as a deployment has them.
    db = await createScratchDatabase('batch_sql');
    for (let run = 0; run < 2; run++) await runPsql(db.name, INSTALL_BATCH_SQL);
    server = await startPostgrestServer({ dbUri: db.connectionString, anonRole: API_ROLE });
    outsiderServer = await startPostgrestServer({ dbUri: db.connectionString, anonRole: OTHER_ROLE });
  });

  after(async () => {
    await server?.close();
    await outsiderServer?.close();
    await db?.drop();
  });

  beforeEach(async () => {
    await db.pool.query('TRUNCATE pgqueuer, pgqueuer_log');
  });

  test('one jsonb argument and a jsonb result, run as the owner with a fixed search_path; EXECUTE for the api role only', async () => {
    const { rows } = await db.pool.query(
      `SELECT pg_get_function_arguments(p.oid) AS arguments, p.prorettype::regtype::text AS returns,
              l.lanname AS language, p.provolatile AS volatility, p.prosecdef AS security_definer,
              p.proconfig AS config,
              NOT EXISTS (SELECT FROM aclexplode(p.proacl) a WHERE a.grantee = 0) AS public_cannot_execute,
              has_function_privilege($2, p.oid, 'EXECUTE') AS api_can_execute,
              has_function_privilege($3, p.oid, 'EXECUTE') AS other_can_execute
       FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
       WHERE p.oid = to_regprocedure($1)`,
      [`public.${FUNCTION}(jsonb)`, API_ROLE, OTHER_ROLE],
    );
    assert.deepEqual(rows, [
      {
        arguments: 'jobs jsonb',
        returns: 'jsonb',
        language: 'plpgsql',
        volatility: 'v',
        security_definer: true,
        config: ['search_path=pg_catalog, pg_temp'],
        public_cannot_execute: true,
        api_can_execute: true,
        other_can_execute: false,
      },
    ]);
    const jobs = '[{"entrypoint":"e"}]';
    await assert.rejects(callSql(db, jobs, `public.${FUNCTION}`, OTHER_ROLE), (error: unknown) => {
      assert.ok(error instanceof pg.DatabaseError);
      assert.equal(error.code, '42501');
      assert.equal(error.message, `permission denied for function ${FUNCTION}`);
      return true;
    });
    // PostgREST answers 42501 for its anonymous role with 401.
    const refused = await post(outsiderServer, jobsBody(['{"entrypoint":"e"}']));
    assert.equal(refused.status, 401, refused.body);
    assert.equal(JSON.parse(refused.body).code, '42501');
    assert.deepEqual(await counts(db), { jobs: 0, logs: 0 });
    assert.equal((await postJobs(server, ['{"entrypoint":"e"}'])).length, 1);
  });

  test('results in input order; every field stored as the single function stores it', async () => {
    const elements = [
      // Written out, so the integer in headers is one JSON.stringify could not print exactly.
      String.raw`{"entrypoint":"full","payload":"\\x00ff00ff7f80","priority":5,"execute_after":"10 seconds",` +
        '"dedupe_key":"key-full","headers":{"otel":{"traceparent":"00-abc-def-01"},"n":12345678901234567890}}',
      '{"entrypoint":"minimal"}',
      '{"entrypoint":"nulls","payload":null,"dedupe_key":null,"headers":null}',
      // PostgREST hands the single function a JSON value's text, so "-7" and 90 are read too.
      '{"entrypoint":"converted","payload":"","priority":"-7","execute_after":90}',
      String.raw`{"entrypoint":"iso","payload":"\\xFF","priority":2147483647,"execute_after":"PT1H"}`,
      '{"entrypoint":"text","payload":"café"}',
    ];
    const sentAt = Date.now();
    const answer = await post(server, jobsBody(elements));
    const answeredAt = Date.now();
    assert.equal(answer.status, 200, answer.body);
    assert.equal(answer.headers['content-type'], 'application/json; charset=utf-8');
    const ids = parseResults(answer.body).map(idOf);
    assert.equal(ids.length, elements.length);
    // Drawn from the sequence in input order, so ids also keep the order of the messages.
    assertConsecutive(ids);
    // The bridge reads the same body into the same results.
    assert.deepEqual(
      interpretBatchResponse(200, answer.body, undefined),
      ids.map((id) => ({ id })),
    );

    const { rows } = await db.pool.query(
      `SELECT id::text, entrypoint, encode(payload, 'hex') AS payload, priority,
              (execute_after - created)::text AS delay, extract(epoch FROM created) * 1000 AS created_ms,
              dedupe_key, headers::text AS headers, status::text, attempts, queue_manager_id
       FROM pgqueuer q ORDER BY q.id`,
    );
    const common = { status: 'queued', attempts: 0, queue_manager_id: null };
    const stored = rows.map(({ created_ms: _created, ...row }) => row);
    assert.deepEqual(stored, [
      {
        id: ids[0],
        entrypoint: 'full',
        payload: '00ff00ff7f80',
        priority: 5,
        delay: '00:00:10',
        dedupe_key: 'key-full',
        headers: '{"n": 12345678901234567890, "otel": {"traceparent": "00-abc-def-01"}}',
        ...common,
      },
      {
        id: ids[1],
        entrypoint: 'minimal',
        payload: null,
        priority: 0,
        delay: '00:00:00',
        dedupe_key: null,
        headers: null,
        ...common,
      },
      {
        id: ids[2],
        entrypoint: 'nulls',
        payload: null,
        priority: 0,
        delay: '00:00:00',
        dedupe_key: null,
        headers: null,
        ...common,
      },
      {
        id: ids[3],
        entrypoint: 'converted',
        payload: '',
        priority: -7,
        delay: '00:01:30',
        dedupe_key: null,
        headers: null,
        ...common,
      },
      {
        id: ids[4],
        entrypoint: 'iso',
        payload: 'ff',
        priority: 2147483647,
        delay: '01:00:00',
        dedupe_key: null,
        headers: null,
        ...common,
      },
      {
        id: ids[5],
        entrypoint: 'text',
        payload: '636166c3a9',
        priority: 0,
        delay: '00:00:00',
        dedupe_key: null,
        headers: null,
        ...common,
      },
    ]);
    // execute_after is now() + the interval, now() being the call's transaction time.
    for (const row of rows) {
      const created = Number(row.created_ms);
      assert.ok(created >= sentAt - 1000 && created <= answeredAt + 1000, `created at ${created}`);
    }

    const logged = await db.pool.query(
      'SELECT job_id::text, status::text, entrypoint, priority, traceback FROM pgqueuer_log l ORDER BY l.job_id',
    );
    assert.deepEqual(
      logged.rows,
      stored.map((row) => ({
        job_id: row.id,
        status: 'queued',
        entrypoint: row.entrypoint,
        priority: row.priority,
        traceback: null,
      })),
    );
  });

  test('called in SQL it returns the same results as through PostgREST', async () => {
    const results = parseResults(
      await callSql(db, '[{"entrypoint":"a","dedupe_key":"k"},{"entrypoint":"b","dedupe_key":"k"}]'),
    );
    assert.equal(results.length, 2);
    assert.equal(results[1], 'duplicate');
    const { rows } = await db.pool.query('SELECT id::text, entrypoint FROM pgqueuer');
    assert.deepEqual(rows, [{ id: idOf(results[0]), entrypoint: 'a' }]);
  });

  test('a dedupe key held by an earlier element or a queued or picked job is a duplicate; a finished job frees it', async () => {
    const single = (entrypoint: string, key: string): Promise<Array<{ id: string }>> =>
      asRole(db, API_ROLE, `SELECT fn_pgqueuer_enqueue($1, NULL, 0, '0', $2)::text AS id`, [entrypoint, key]);
    await single('held', 'held-queued');
    const [picked] = await single('held', 'held-picked');
    const [finished] = await single('held', 'freed');
    await db.pool.query(`UPDATE pgqueuer SET status = 'picked' WHERE id = $1`, [picked?.id]);
    await db.pool.query(`UPDATE pgqueuer SET status = 'successful' WHERE id = $1`, [finished?.id]);
    const job = (entrypoint: string, key?: string): string =>
      JSON.stringify(key === undefined ? { entrypoint } : { entrypoint, dedupe_key: key });

    const results = await postJobs(server, [
      job('against-queued', 'held-queued'),
      job('new-first', 'new'),
      job('new-second', 'new'),
      job('no-key-1'),
      JSON.stringify({ entrypoint: 'no-key-2', dedupe_key: null }),
      job('against-picked', 'held-picked'),
      job('against-finished', 'freed'),
      job('new-third', 'new'),
      job('freed-again', 'freed'),
    ]);
    const kinds = results.map((result) => (result === 'duplicate' ? 'duplicate' : 'id'));
    assert.deepEqual(kinds, [
      'duplicate',
      'id',
      'duplicate',
      'id',
      'id',
      'duplicate',
      'id',
      'duplicate',
      'duplicate',
    ]);
    const { rows } = await db.pool.query(
      `SELECT id::text, entrypoint FROM pgqueuer q WHERE entrypoint <> 'held' ORDER BY q.id`,
    );
    assert.deepEqual(rows, [
      { id: idOf(results[1]), entrypoint: 'new-first' },
      { id: idOf(results[3]), entrypoint: 'no-key-1' },
      { id: idOf(results[4]), entrypoint: 'no-key-2' },
      { id: idOf(results[6]), entrypoint: 'against-finished' },
    ]);
    const logged = await db.pool.query(
      `SELECT job_id::text AS id, entrypoint FROM pgqueuer_log WHERE entrypoint <> 'held' ORDER BY job_id`,
    );
    assert.deepEqual(logged.rows, rows, 'log rows for the enqueued jobs only');

    // Once the job holding a key has finished, the key is accepted again.
    await db.pool.query(`UPDATE pgqueuer SET status = 'successful' WHERE dedupe_key = 'new'`);
    const [again] = await postJobs(server, [job('new-after-finish', 'new')]);
    const { rows: queued } = await db.pool.query(
      `SELECT id::text FROM pgqueuer WHERE dedupe_key = 'new' AND status = 'queued'`,
    );
    assert.deepEqual(queued, [{ id: idOf(again) }]);
  });

  test('an empty array gives [] and writes nothing', async () => {
    const answer = await post(server, '{"jobs":[]}');
    assert.deepEqual([answer.status, answer.body], [200, '[]']);
    assert.equal(await callSql(db, '[]'), '[]');
    assert.deepEqual(await counts(db), { jobs: 0, logs: 0 });
  });

  test('a bad element refuses the whole call with 400, names the element and enqueues nothing', async () => {
    const good = ['{"entrypoint":"ok-0","dedupe_key":"ok"}', '{"entrypoint":"ok-1"}'];
    const last = String.raw`{"entrypoint":"ok-3","payload":"\\x00"}`;
    const detail = 'Element 2 of 4 (counting from 0) was refused, so no job of this call was enqueued.';
    for (const bad of BAD_ELEMENTS) {
      const elements = [...good, bad.element, last];
      const expected = {
        code: bad.code,
        message: `jobs[2]${bad.message}`,
        details: detail,
        hint: ELEMENT_HINT,
      };

      const answer = await post(server, jobsBody(elements));
      assert.equal(answer.status, 400, `${bad.name}: ${answer.body}`);
      assert.deepEqual(JSON.parse(answer.body), expected, bad.name);
      // The bridge splits a batch refused for an element's data; 22023 it takes for a role
      // problem, but its own hex encoding never produces one.
      const result = interpretBatchResponse(answer.status, answer.body, undefined);
      assert.ok('kind' in result, bad.name);
      if (bad.code !== '22023') {
        assert.equal(
          classify(result, { hasDedupeKey: false, dedupeConstraint: undefined }).kind,
          'rejected_by_rpc',
          bad.name,
        );
      }

      await assert.rejects(callSql(db, `[${elements.join(',')}]`), (error: unknown) => {
        assert.ok(error instanceof pg.DatabaseError, bad.name);
        const { code, message, detail: details, hint } = error;
        assert.deepEqual({ code, message, details, hint }, expected, bad.name);
        return true;
      });
    }
    assert.deepEqual(await counts(db), { jobs: 0, logs: 0 });
  });

  test('every element is checked for its shape before any value is converted', async () => {
    const answer = await post(
      server,
      jobsBody(['{"entrypoint":"a"}', '{"entrypoint":"b","priority":"high"}', '{"entrypoint":"c"}', '7']),
    );
    assert.equal(answer.status, 400);
    assert.equal(JSON.parse(answer.body).message, 'jobs[3]: expected an object, got number');
    const next = await post(
      server,
      jobsBody([
        '{"entrypoint":"a"}',
        '{"entrypoint":"b","priority":"high"}',
        '{"entrypoint":"c","priority":"x"}',
      ]),
    );
    assert.equal(
      JSON.parse(next.body).message,
      'jobs[1].priority: invalid input syntax for type integer: "high"',
    );
    assert.deepEqual(await counts(db), { jobs: 0, logs: 0 });
  });

  test('jobs that is not an array is refused; no jobs key finds no function', async () => {
    const cases = [
      { body: '{"jobs":{"entrypoint":"e"}}', got: 'object' },
      { body: '{"jobs":null}', got: 'null' },
      { body: '{"jobs":"[{\\"entrypoint\\":\\"e\\"}]"}', got: 'string' },
    ];
    for (const { body, got } of cases) {
      const answer = await post(server, body);
      assert.equal(answer.status, 400, body);
      assert.deepEqual(JSON.parse(answer.body), {
        code: '22023',
        message: `jobs must be a JSON array of job objects, got ${got}`,
        details: null,
        hint: 'Send {"jobs": [{"entrypoint": "..."}, ...]}.',
      });
    }
    for (const body of ['{}', '{"jobs":[],"atomic":true}', '[{"entrypoint":"e"}]']) {
      const answer = await post(server, body);
      assert.equal(answer.status, 404, body);
      assert.equal(JSON.parse(answer.body).code, 'PGRST202');
    }
    assert.deepEqual(await counts(db), { jobs: 0, logs: 0 });
  });

  test('1,000 jobs in one call: ids in input order, 1,000 log rows, one notification for the workers', async () => {
    const listener = new pg.Client({ connectionString: db.connectionString });
    await listener.connect();
    try {
      const notified: string[] = [];
      let sentinelSeen: () => void = () => {};
      const sentinel = new Promise<void>((resolve) => {
        sentinelSeen = resolve;
      });
      listener.on('notification', (message) => {
        if (message.payload === 'sentinel') sentinelSeen();
        else notified.push(message.payload ?? '');
      });
      await listener.query('LISTEN ch_pgqueuer');

      assert.deepEqual(await postJobs(server, []), []);
      const elements = Array.from({ length: 1000 }, (_, i) =>
        JSON.stringify({
          entrypoint: `job-${i}`,
          payload: `\\x${i.toString(16).padStart(4, '0')}`,
          priority: i % 10,
          dedupe_key: `key-${i}`,
          headers: { i },
        }),
      );
      const ids = (await postJobs(server, elements)).map(idOf);
      assert.equal(ids.length, 1000);
      assertConsecutive(ids);

      const { rows } = await db.pool.query<{ id: string; entrypoint: string; payload: string }>(
        `SELECT id::text, entrypoint, encode(payload, 'hex') AS payload FROM pgqueuer q ORDER BY q.id`,
      );
      assert.deepEqual(
        rows,
        ids.map((id, i) => ({ id, entrypoint: `job-${i}`, payload: i.toString(16).padStart(4, '0') })),
      );
      const logged = await db.pool.query<{ id: string }>(
        `SELECT job_id::text AS id FROM pgqueuer_log WHERE status = 'queued' ORDER BY job_id`,
      );
      assert.deepEqual(
        logged.rows.map((row) => row.id),
        ids,
      );

      // Notifications arrive in commit order, so once this one is in, the calls' are too.
      await db.pool.query(`NOTIFY ch_pgqueuer, 'sentinel'`);
      await sentinel;
      assert.equal(
        notified.length,
        1,
        'PGQueuer wakes its workers once per statement, not for an empty call',
      );
      assert.equal(JSON.parse(notified[0] ?? '').operation, 'insert');
    } finally {
      await listener.end();
    }
  });

  test('concurrent calls sharing dedupe keys: each key enqueued once, no deadlock', async () => {
    const shuffled = <T>(items: readonly T[]): T[] => {
      const copy = [...items];
      for (let i = copy.length - 1; i > 0; i--) {
        const j = Math.floor(Math.random() * (i + 1));
        [copy[i], copy[j]] = [copy[j] as T, copy[i] as T];
      }
      return copy;
    };
    let sent = 0;
    let enqueued = 0;
    const keysSent = new Set<string>();
    for (let round = 0; round < 5; round++) {
      const keys = Array.from({ length: 40 }, (_, i) => `round-${round}-key-${i}`);
      // Each call takes half the keys in its own order, which without a common insert order
      // makes concurrent calls wait for each other in a cycle (a deadlock, 40P01).
      const calls = Array.from({ length: 8 }, () => shuffled(keys).slice(0, 20));
      const answers = await Promise.all(
        calls.map((callKeys) =>
          postJobs(
            server,
            callKeys.map((key) => JSON.stringify({ entrypoint: 'shared', dedupe_key: key })),
          ),
        ),
      );
      for (const key of calls.flat()) keysSent.add(key);
      sent += calls.flat().length;
      enqueued += answers.flat().filter((result) => result !== 'duplicate').length;
    }
    const { rows } = await db.pool.query<{ jobs: number; keys: number }>(
      'SELECT count(*)::int AS jobs, count(DISTINCT dedupe_key)::int AS keys FROM pgqueuer',
    );
    assert.equal(enqueued, keysSent.size, 'one id per key');
    assert.deepEqual(rows, [{ jobs: keysSent.size, keys: keysSent.size }]);
    assert.ok(sent > enqueued, 'the calls did overlap');
  });

  test('timing: one call of 100 jobs against 100 single calls (information only)', async (t) => {
    const url = (fn: string): string => `${server.url}/rpc/${fn}`;
    const postJson = async (fn: string, body: string): Promise<void> => {
      // fetch keeps its connection alive, as the bridge does.
      const response = await fetch(url(fn), {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body,
      });
      assert.equal(response.status, 200, await response.text());
    };
    const byte = (i: number): string => (i % 256).toString(16).padStart(2, '0');
    const single = (i: number): string => JSON.stringify({ entrypoint: 'timed', payload: `\\x${byte(i)}` });
    const batch = jobsBody(Array.from({ length: 100 }, (_, i) => single(i)));
    const time = async (work: () => Promise<unknown>): Promise<number> => {
      const start = process.hrtime.bigint();
      await work();
      return Number(process.hrtime.bigint() - start) / 1e6;
    };
    const median = (values: number[]): number =>
      values.sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? 0;
    const rounds = { batch: [] as number[], sequential: [] as number[], concurrent: [] as number[] };
    const sqlRounds = { batch: [] as number[], sequential: [] as number[] };
    const client = new pg.Client({ connectionString: db.connectionString });
    await client.connect();
    try {
      for (let round = 0; round < 6; round++) {
        rounds.batch.push(await time(() => postJson(FUNCTION, batch)));
        rounds.sequential.push(
          await time(async () => {
            for (let i = 0; i < 100; i++) await postJson('fn_pgqueuer_enqueue', single(i));
          }),
        );
        rounds.concurrent.push(
          await time(async () => {
            // As many in flight as the server's pool has connections.
            for (let i = 0; i < 100; i += 10) {
              await Promise.all(
                Array.from({ length: 10 }, (_, j) => postJson('fn_pgqueuer_enqueue', single(i + j))),
              );
            }
          }),
        );
        const jobs = `[${Array.from({ length: 100 }, (_, i) => single(i)).join(',')}]`;
        sqlRounds.batch.push(await time(() => client.query(`SELECT ${FUNCTION}($1::jsonb)`, [jobs])));
        sqlRounds.sequential.push(
          await time(async () => {
            for (let i = 0; i < 100; i++) {
              await client.query(`SELECT fn_pgqueuer_enqueue('timed', $1::bytea)`, [`\\x${byte(i)}`]);
            }
          }),
        );
      }
    } finally {
      await client.end();
    }
    // The first round warms up connections and plans.
    const ms = (values: number[]): string => `${median(values.slice(1)).toFixed(1)} ms`;
    t.diagnostic(
      `100 jobs through the PostgREST-compatible server: one batch call ${ms(rounds.batch)}, ` +
        `100 single calls one after another ${ms(rounds.sequential)}, 10 at a time ${ms(rounds.concurrent)}`,
    );
    t.diagnostic(
      `100 jobs in SQL on one connection: one batch call ${ms(sqlRounds.batch)}, ` +
        `100 single calls ${ms(sqlRounds.sequential)} (medians of 5 rounds)`,
    );
    assert.equal((await counts(db)).jobs, 6 * 500);
  });

  test('sql/uninstall-batch.sql removes the bulk function and leaves the single one', async () => {
    for (let run = 0; run < 2; run++) await runPsql(db.name, UNINSTALL_BATCH_SQL);
    const { rows } = await db.pool.query(
      `SELECT to_regprocedure('public.${FUNCTION}(jsonb)') IS NULL AS batch_gone,
              to_regproc('public.fn_pgqueuer_enqueue') IS NOT NULL AS single_kept`,
    );
    assert.deepEqual(rows, [{ batch_gone: true, single_kept: true }]);
  });
});

describe('sql/install-batch.sql with every name changed', { timeout: 60_000 }, () => {
  let db: ScratchDatabase;
  let server: PostgrestServer;
  const variables = {
    api_schema: 'api',
    queue_schema: 'jobs',
    queue_table: 'myq',
    log_table: 'myq_log',
    function_name: 'enqueue_jobs',
    api_role: CUSTOM_ROLE,
  };

  before(async () => {
    await ensureRoles([{ name: CUSTOM_ROLE }]);
    db = await createScratchDatabase('batch_sql_custom', { schema: false, install: false });
    // Renamed after creation, so the id sequence keeps the name pgqueuer_id_seq.
    await db.pool.query(
      `CREATE SCHEMA api; CREATE SCHEMA jobs;
       BEGIN; SET LOCAL search_path = jobs; ${await readFile(PGQUEUER_SCHEMA_SQL, 'utf8')}; COMMIT;
       ALTER TABLE jobs.pgqueuer RENAME TO myq; ALTER TABLE jobs.pgqueuer_log RENAME TO myq_log;
       GRANT USAGE ON SCHEMA api, jobs TO ${CUSTOM_ROLE};`,
    );
    await runPsql(db.name, INSTALL_SQL, { ...variables, function_name: 'enqueue_job' });
    for (let run = 0; run < 2; run++) await runPsql(db.name, INSTALL_BATCH_SQL, variables);
    server = await startPostgrestServer({
      dbUri: db.connectionString,
      schemas: ['api'],
      anonRole: CUSTOM_ROLE,
    });
  });

  after(async () => {
    await server?.close();
    await db?.drop();
  });

  test('enqueues into jobs.myq and jobs.myq_log, and ids keep every digit', async () => {
    await db.pool.query(`SELECT setval('jobs.pgqueuer_id_seq', 9007199254740992)`);
    const answer = await post(
      server,
      jobsBody([
        '{"entrypoint":"big","dedupe_key":"k"}',
        '{"entrypoint":"dup","dedupe_key":"k"}',
        '{"entrypoint":"bigger"}',
      ]),
      'enqueue_jobs',
    );
    assert.equal(answer.status, 200, answer.body);
    assert.equal(answer.body, '[{"id": 9007199254740993}, {"duplicate": true}, {"id": 9007199254740994}]');
    assert.deepEqual(interpretBatchResponse(200, answer.body, undefined), [
      { id: '9007199254740993' },
      'duplicate',
      { id: '9007199254740994' },
    ]);
    const { rows } = await db.pool.query(
      `SELECT q.id::text, q.entrypoint, l.status::text AS logged
       FROM jobs.myq q JOIN jobs.myq_log l ON l.job_id = q.id ORDER BY q.id`,
    );
    assert.deepEqual(rows, [
      { id: '9007199254740993', entrypoint: 'big', logged: 'queued' },
      { id: '9007199254740994', entrypoint: 'bigger', logged: 'queued' },
    ]);
    const absent = await db.pool.query(`SELECT to_regproc('public.${FUNCTION}') IS NULL AS absent`);
    assert.deepEqual(absent.rows, [{ absent: true }], 'nothing is installed under the default names');
  });

  test('a data error that no element explains is passed on unchanged', async () => {
    await db.pool.query(`
      CREATE FUNCTION jobs.refuse() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
          RAISE EXCEPTION USING ERRCODE = '22012', MESSAGE = 'refused by a trigger', DETAIL = 'its own detail';
      END $$;
      CREATE TRIGGER refuse BEFORE INSERT ON jobs.myq FOR EACH ROW
          WHEN (new.entrypoint = 'refused') EXECUTE FUNCTION jobs.refuse();`);
    try {
      const answer = await post(
        server,
        jobsBody(['{"entrypoint":"fine"}', '{"entrypoint":"refused"}']),
        'enqueue_jobs',
      );
      assert.equal(answer.status, 400, answer.body);
      assert.deepEqual(JSON.parse(answer.body), {
        code: '22012',
        message: 'refused by a trigger',
        details: 'its own detail',
        hint: null,
      });
    } finally {
      await db.pool.query('DROP TRIGGER refuse ON jobs.myq; DROP FUNCTION jobs.refuse()');
    }
  });

  test('sql/uninstall-batch.sql with the same names removes it', async () => {
    const names = { api_schema: 'api', function_name: 'enqueue_jobs' };
    for (let run = 0; run < 2; run++) await runPsql(db.name, UNINSTALL_BATCH_SQL, names);
    const { rows } = await db.pool.query(
      `SELECT to_regprocedure('api.enqueue_jobs(jsonb)') IS NULL AS batch_gone,
              to_regproc('api.enqueue_job') IS NOT NULL AS single_kept`,
    );
    assert.deepEqual(rows, [{ batch_gone: true, single_kept: true }]);
  });

  test('a missing api role stops the install before anything is created', async () => {
    const missing = `pgq_batch_missing_${suffix}`;
    await assert.rejects(
      runPsql(db.name, INSTALL_BATCH_SQL, { ...variables, api_role: missing }),
      (error: unknown) => {
        assert.ok(error instanceof Error && 'stderr' in error);
        assert.match(String(error.stderr), new RegExp(`role "${missing}" does not exist`));
        return true;
      },
    );
    const { rows } = await db.pool.query(`SELECT to_regproc('api.enqueue_jobs') IS NULL AS absent`);
    assert.deepEqual(rows, [{ absent: true }]);
  });
});
