// sql/install-ledger.sql and sql/uninstall-ledger.sql, called in SQL as the API role: a
// replayed message_id returns its first job id and creates nothing, whatever became of the
// job; two connections replaying one message_id at once end with one job; a bulk call answers
// repeats inside it and against existing entries; pruning drops whole partitions; the API
// role can call the functions and nothing else; it works over the hardened function too.
//
// Roles are cluster-wide, so this file names its own with a random suffix and drops them.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import {
  adminPool,
  asRole,
  BATCH_INSTALL_SQL,
  connectionString,
  createScratchDatabase,
  ensureRoles,
  isPgError,
  runPsql,
  type ScratchDatabase,
} from '../support/pg.ts';
import { httpRequest } from '../support/postgrest/recordings.ts';
import { startPostgrestServer } from '../support/postgrest/server.ts';

const LEDGER_SQL = fileURLToPath(new URL('../../sql/install-ledger.sql', import.meta.url));
const UNINSTALL_LEDGER_SQL = fileURLToPath(new URL('../../sql/uninstall-ledger.sql', import.meta.url));
const HARDENED_SQL = fileURLToPath(new URL('../../sql/install-hardened.sql', import.meta.url));
const SERIALIZATION_FAILURE = '40001';

const suffix = randomBytes(4).toString('hex');
const API_ROLE = `pgq_ledger_api_${suffix}`;
const OWNER_ROLE = `pgq_ledger_owner_${suffix}`;
const AUTHENTICATOR = { user: `pgq_ledger_auth_${suffix}`, password: randomBytes(12).toString('hex') };

type Answer = { id: string; replayed?: boolean } | { duplicate: true };

/** An answer with the id as text, so that bigint ids compare exactly. */
function normalise(answer: unknown): Answer {
  const value = answer as { id?: number | string; replayed?: boolean; duplicate?: true };
  if (value.duplicate === true) return { duplicate: true };
  assert.ok(value.id !== undefined, `no id in ${JSON.stringify(answer)}`);
  return value.replayed === undefined
    ? { id: String(value.id) }
    : { id: String(value.id), replayed: value.replayed };
}

async function once(
  db: ScratchDatabase,
  messageId: string,
  entrypoint: string,
  dedupeKey?: string,
): Promise<Answer> {
  const [row] = await asRole<{ answer: unknown }>(
    db,
    API_ROLE,
    `SELECT public.fn_pgqueuer_enqueue_once($1, $2, NULL, 0, '0', $3) AS answer`,
    [messageId, entrypoint, dedupeKey ?? null],
  );
  return normalise(row?.answer);
}

async function batchOnce(db: ScratchDatabase, jobs: readonly object[]): Promise<Answer[]> {
  const [row] = await asRole<{ answer: unknown[] }>(
    db,
    API_ROLE,
    'SELECT public.fn_pgqueuer_enqueue_batch_once($1::jsonb) AS answer',
    [JSON.stringify(jobs)],
  );
  return (row?.answer ?? []).map(normalise);
}

async function count(db: ScratchDatabase, sql: string, values: unknown[] = []): Promise<number> {
  const { rows } = await db.pool.query<{ n: number }>(`SELECT (${sql})::int AS n`, values);
  return rows[0]?.n ?? -1;
}

const jobsOf = (db: ScratchDatabase, entrypoint: string) =>
  count(db, 'SELECT count(*) FROM pgqueuer WHERE entrypoint = $1', [entrypoint]);

/** A client logged in as the authenticator and switched to the API role, as PostgREST is. */
async function apiClient(db: ScratchDatabase): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: connectionString(db.name, AUTHENTICATOR) });
  await client.connect();
  await client.query(`SET ROLE "${API_ROLE}"`);
  return client;
}

function today(): string {
  return new Date().toISOString().slice(0, 10).replaceAll('-', '');
}

describe('sql/install-ledger.sql', { timeout: 120_000 }, () => {
  const databases: ScratchDatabase[] = [];
  let db: ScratchDatabase;

  async function scratch(prefix: string): Promise<ScratchDatabase> {
    const created = await createScratchDatabase(prefix, { install: { api_role: API_ROLE } });
    databases.push(created);
    return created;
  }

  before(async () => {
    await ensureRoles([
      { name: API_ROLE },
      { name: OWNER_ROLE },
      { name: AUTHENTICATOR.user, login: true, inherit: false, ...AUTHENTICATOR, memberOf: [API_ROLE] },
    ]);
    db = await scratch('ledger');
    await runPsql(db.name, BATCH_INSTALL_SQL, { api_role: API_ROLE });
    for (let run = 0; run < 2; run++) await runPsql(db.name, LEDGER_SQL, { api_role: API_ROLE });
  });

  after(async () => {
    await Promise.all(databases.map((each) => each.drop()));
    const admin = adminPool();
    try {
      await admin.query(`DROP ROLE IF EXISTS "${AUTHENTICATOR.user}", "${API_ROLE}", "${OWNER_ROLE}"`);
    } finally {
      await admin.end();
    }
  });

  test('install creates today and the next seven days, and prepare is idempotent', async () => {
    assert.equal(
      await count(db, `SELECT count(*) FROM pg_inherits WHERE inhparent = 'pgqueuer_ledger'::regclass`),
      9,
      'eight days and the default partition',
    );
    assert.equal(await count(db, `SELECT to_regclass($1) IS NOT NULL`, [`pgqueuer_ledger_${today()}`]), 1);
    const [row] = await asRole<{ n: number }>(
      db,
      API_ROLE,
      'SELECT public.fn_pgqueuer_ledger_prepare() AS n',
    );
    assert.equal(row?.n, 0);
  });

  test('a replay returns the first job id and creates nothing, whatever the job became', async () => {
    const first = await once(db, 'replay-1', 'replay');
    assert.ok('id' in first);
    assert.deepEqual(first, { id: first.id, replayed: false });
    const replay = { id: first.id, replayed: true };
    assert.deepEqual(await once(db, 'replay-1', 'replay'), replay, 'while queued');
    await db.pool.query(`UPDATE pgqueuer SET status = 'picked' WHERE id = $1`, [first.id]);
    assert.deepEqual(await once(db, 'replay-1', 'replay'), replay, 'while picked');
    await db.pool.query('DELETE FROM pgqueuer WHERE id = $1', [first.id]);
    assert.deepEqual(await once(db, 'replay-1', 'replay'), replay, 'after it finished and was deleted');
    assert.deepEqual(await batchOnce(db, [{ message_id: 'replay-1', entrypoint: 'replay' }]), [replay]);
    assert.equal(await count(db, `SELECT count(*) FROM pgqueuer_log WHERE entrypoint = 'replay'`), 1);
  });

  test('a dedupe-key conflict rolls the call back, ledger entry included', async () => {
    await once(db, 'dedupe-1', 'dedupe', 'dedupe-key');
    await assert.rejects(once(db, 'dedupe-2', 'dedupe', 'dedupe-key'), (error: unknown) =>
      isPgError(error, '23505'),
    );
    assert.equal(await count(db, `SELECT count(*) FROM pgqueuer_ledger WHERE message_id = 'dedupe-2'`), 0);
  });

  test('an empty message_id is refused; none at all enqueues without an entry, every time', async () => {
    await assert.rejects(once(db, '', 'empty'), (error: unknown) => isPgError(error, '22023'));
    await assert.rejects(
      batchOnce(db, [
        { message_id: 'ok', entrypoint: 'empty' },
        { message_id: '', entrypoint: 'empty' },
      ]),
      {
        message: 'jobs[1].message_id: must not be empty',
      },
    );
    await assert.rejects(batchOnce(db, [{ message_id: 7, entrypoint: 'empty' }]), {
      message: 'jobs[0].message_id: expected a string or null, got number',
    });
    assert.equal(await jobsOf(db, 'empty'), 0);
    const [row] = await asRole<{ answer: unknown }>(
      db,
      API_ROLE,
      `SELECT public.fn_pgqueuer_enqueue_once(NULL, 'anonymous') AS answer`,
    );
    const single = normalise(row?.answer);
    assert.ok('id' in single && single.replayed === false);
    const bulk = await batchOnce(db, [
      { entrypoint: 'anonymous' },
      { message_id: null, entrypoint: 'anonymous' },
      { message_id: 'named', entrypoint: 'anonymous' },
      { entrypoint: 'anonymous' },
    ]);
    assert.equal(new Set(bulk.map((answer) => ('id' in answer ? answer.id : 'none'))).size, 4);
    assert.ok(bulk.every((answer) => 'id' in answer && answer.replayed === undefined));
    assert.equal(await jobsOf(db, 'anonymous'), 5);
    assert.equal(
      await count(
        db,
        `SELECT count(DISTINCT message_id) FROM pgqueuer_ledger WHERE job_id IN (SELECT id FROM pgqueuer WHERE entrypoint = 'anonymous')`,
      ),
      1,
    );
  });

  for (const mode of ['single', 'bulk'] as const) {
    test(`concurrent replays on two connections end with one job (${mode})`, async () => {
      const entrypoint = `concurrent-${mode}`;
      const call =
        mode === 'single'
          ? `SELECT public.fn_pgqueuer_enqueue_once('${entrypoint}', '${entrypoint}') AS answer`
          : `SELECT public.fn_pgqueuer_enqueue_batch_once('[{"message_id": "${entrypoint}", "entrypoint": "${entrypoint}"}, {"message_id": "${entrypoint}-other", "entrypoint": "${entrypoint}"}]') AS answer`;
      const [first, second] = [await apiClient(db), await apiClient(db)];
      try {
        await first.query('BEGIN');
        const firstAnswer = (await first.query<{ answer: unknown }>(call)).rows[0]?.answer;
        // The second call's ledger insert waits for the first transaction.
        const racing = second.query(call).then(
          () => 'succeeded',
          (error: unknown) =>
            isPgError(error, SERIALIZATION_FAILURE) ? 'serialization failure' : String(error),
        );
        await waitForLock(db, second);
        await first.query('COMMIT');
        assert.equal(await racing, 'serialization failure');
        const retried = (await second.query<{ answer: unknown }>(call)).rows[0]?.answer;
        const firstIds = [firstAnswer].flat().map(normalise);
        assert.deepEqual(
          [retried].flat().map(normalise),
          firstIds.map((answer) => ({ ...answer, replayed: true })),
          'the retry is answered with the first call’s ids, as replays',
        );
        assert.equal(await jobsOf(db, entrypoint), firstIds.length);
      } finally {
        await Promise.all([first.end(), second.end()]);
      }
    });
  }

  test('a bulk call answers repeats inside it and against existing entries', async () => {
    const [existing] = await batchOnce(db, [{ message_id: 'bulk-old', entrypoint: 'bulk' }]);
    assert.ok(existing !== undefined && 'id' in existing);
    const answers = await batchOnce(db, [
      { message_id: 'bulk-new', entrypoint: 'bulk' },
      { message_id: 'bulk-old', entrypoint: 'bulk' },
      { message_id: 'bulk-new', entrypoint: 'bulk' },
      { message_id: 'bulk-key-1', entrypoint: 'bulk', dedupe_key: 'bulk-key' },
      { message_id: 'bulk-key-2', entrypoint: 'bulk', dedupe_key: 'bulk-key' },
      { message_id: 'bulk-key-2', entrypoint: 'bulk', dedupe_key: 'bulk-key' },
      { message_id: 'bulk-last', entrypoint: 'bulk', priority: 3 },
    ]);
    const [fresh, , , keyed, , , last] = answers;
    assert.ok(fresh && 'id' in fresh && keyed && 'id' in keyed && last && 'id' in last);
    assert.deepEqual(answers, [
      { id: fresh.id },
      { id: existing.id, replayed: true },
      { id: fresh.id, replayed: true },
      { id: keyed.id },
      { duplicate: true },
      { duplicate: true },
      { id: last.id },
    ]);
    assert.equal(await jobsOf(db, 'bulk'), 4);
    const { rows } = await db.pool.query<{ message_id: string; job_id: string }>(
      `SELECT DISTINCT message_id, job_id::text FROM pgqueuer_ledger WHERE message_id LIKE 'bulk-%' ORDER BY 1`,
    );
    assert.deepEqual(rows, [
      { message_id: 'bulk-key-1', job_id: keyed.id },
      { message_id: 'bulk-last', job_id: last.id },
      { message_id: 'bulk-new', job_id: fresh.id },
      { message_id: 'bulk-old', job_id: existing.id },
    ]);
  });

  test('a bulk error names the element in the caller’s array, not in the one passed on', async () => {
    await assert.rejects(
      batchOnce(db, [
        { message_id: 'bulk-old', entrypoint: 'bulk' },
        { message_id: 'bad-new', entrypoint: 'bad' },
        { message_id: 'bad-value', entrypoint: 'bad', priority: 'high' },
      ]),
      (error: unknown) => {
        assert.ok(isPgError(error, '22P02'), String(error));
        assert.equal(
          (error as Error).message,
          'jobs[2].priority: invalid input syntax for type integer: "high"',
        );
        assert.match(String((error as pg.DatabaseError).detail), /^Element 2 of 3 \(counting from 0\)/);
        return true;
      },
    );
    assert.equal(await jobsOf(db, 'bad'), 0);
  });

  test('prune drops whole partitions past the retention, and a pruned message_id enqueues again', async () => {
    await db.pool.query(
      `CREATE TABLE pgqueuer_ledger_20000101 PARTITION OF pgqueuer_ledger FOR VALUES FROM ('2000-01-01') TO ('2000-01-02');
       INSERT INTO pgqueuer_ledger (message_id, day, job_id) VALUES ('ancient', '2000-01-01', 1), ('ancient-default', '2000-01-05', 1)`,
    );
    assert.equal(await count(db, `SELECT count(*) FROM pgqueuer_ledger_default`), 1);
    await assert.rejects(
      asRole(db, API_ROLE, `SELECT public.fn_pgqueuer_ledger_prune('1 day')`),
      (error: unknown) => isPgError(error, '22023'),
      'less than the installed retention',
    );
    const entries = await count(db, 'SELECT count(*) FROM pgqueuer_ledger');
    const [row] = await asRole<{ n: number }>(db, API_ROLE, 'SELECT public.fn_pgqueuer_ledger_prune() AS n');
    assert.equal(row?.n, 1);
    assert.equal(await count(db, `SELECT to_regclass('pgqueuer_ledger_20000101') IS NULL`), 1);
    assert.equal(
      await count(db, 'SELECT count(*) FROM pgqueuer_ledger'),
      entries - 2,
      'only the old entries went',
    );
    const again = await once(db, 'ancient', 'ancient');
    assert.ok('id' in again && again.replayed === false);
  });

  test('the API role can call the ledger functions and cannot touch the ledger', async () => {
    for (const statement of [
      'SELECT * FROM pgqueuer_ledger',
      `INSERT INTO pgqueuer_ledger (message_id, day, job_id) VALUES ('forged', current_date, 1)`,
      `DELETE FROM pgqueuer_ledger`,
      `SELECT * FROM pgqueuer_ledger_${today()}`,
    ]) {
      await assert.rejects(
        asRole(db, API_ROLE, statement),
        (error: unknown) => isPgError(error, '42501'),
        statement,
      );
    }
  });

  test('through the RPC server: one job per message_id, single and bulk', async () => {
    const server = await startPostgrestServer({
      dbUri: connectionString(db.name, AUTHENTICATOR),
      anonRole: API_ROLE,
      applicationName: `pgrst-ledger-${suffix}`,
    });
    try {
      const post = (fn: string, body: unknown) =>
        httpRequest(server.port, {
          method: 'POST',
          path: `/rpc/${fn}`,
          headers: { 'Content-Type': 'application/json', Connection: 'close' },
          body: JSON.stringify(body),
        });
      const answers: Answer[][] = [];
      for (let run = 0; run < 2; run++) {
        const single = await post('fn_pgqueuer_enqueue_once', { message_id: 'rpc-1', entrypoint: 'rpc' });
        assert.equal(single.status, 200, single.body);
        const bulk = await post('fn_pgqueuer_enqueue_batch_once', {
          jobs: [
            { message_id: 'rpc-1', entrypoint: 'rpc' },
            { message_id: 'rpc-2', entrypoint: 'rpc' },
          ],
        });
        assert.equal(bulk.status, 200, bulk.body);
        answers.push([JSON.parse(single.body), ...JSON.parse(bulk.body)].map(normalise));
      }
      const first = answers[0]?.[0];
      const second = answers[0]?.[2];
      assert.ok(first && 'id' in first && second && 'id' in second);
      assert.deepEqual(answers, [
        [{ id: first.id, replayed: false }, { id: first.id, replayed: true }, { id: second.id }],
        [
          { id: first.id, replayed: true },
          { id: first.id, replayed: true },
          { id: second.id, replayed: true },
        ],
      ]);
      assert.equal(await jobsOf(db, 'rpc'), 2);
    } finally {
      await server.close();
    }
  });

  test('over the hardened function, owned by its owner role', async () => {
    const hardened = await scratch('ledger_hardened');
    await hardened.pool.query(
      `GRANT USAGE, CREATE ON SCHEMA public TO "${OWNER_ROLE}";
       GRANT SELECT, INSERT ON TABLE pgqueuer TO "${OWNER_ROLE}";
       GRANT INSERT ON TABLE pgqueuer_log TO "${OWNER_ROLE}";
       GRANT USAGE ON SEQUENCE pgqueuer_id_seq TO "${OWNER_ROLE}";`,
    );
    await runPsql(hardened.name, HARDENED_SQL, {
      api_role: API_ROLE,
      owner_role: OWNER_ROLE,
      allowed_entrypoints: 'ok',
    });
    await runPsql(hardened.name, BATCH_INSTALL_SQL, { api_role: API_ROLE });
    await runPsql(hardened.name, LEDGER_SQL, { api_role: API_ROLE });
    const { rows } = await hardened.pool.query<{ owner: string }>(
      `SELECT relowner::regrole::text AS owner FROM pg_class WHERE oid = 'pgqueuer_ledger'::regclass`,
    );
    assert.deepEqual(rows, [{ owner: OWNER_ROLE }]);
    const first = await once(hardened, 'h-1', 'ok');
    assert.deepEqual(await once(hardened, 'h-1', 'ok'), { ...first, replayed: true });
    await assert.rejects(once(hardened, 'h-2', 'not-listed'), (error: unknown) => isPgError(error, 'PT422'));
    const bulk = await batchOnce(hardened, [
      { message_id: 'h-1', entrypoint: 'ok' },
      { message_id: 'h-3', entrypoint: 'ok' },
    ]);
    assert.deepEqual(bulk[0], { ...first, replayed: true });
  });

  test('uninstall removes the functions and the ledger, and leaves the API role no grant of it', async () => {
    for (let run = 0; run < 2; run++) await runPsql(db.name, UNINSTALL_LEDGER_SQL);
    assert.equal(await count(db, `SELECT count(*) FROM pg_class WHERE relname LIKE 'pgqueuer_ledger%'`), 0);
    const { rows } = await db.pool.query<{ grant: string }>(
      `SELECT p.oid::regprocedure::text AS grant FROM pg_proc p, aclexplode(p.proacl) a
       WHERE a.grantee = $1::regrole ORDER BY 1`,
      [API_ROLE],
    );
    assert.deepEqual(rows, [
      { grant: 'fn_pgqueuer_enqueue(text,bytea,integer,interval,text,jsonb)' },
      { grant: 'fn_pgqueuer_enqueue_batch(jsonb)' },
    ]);
  });
});

/** Resolves once `client`'s backend waits for a lock. */
async function waitForLock(db: ScratchDatabase, client: pg.Client): Promise<void> {
  const pid = (client as unknown as { processID: number }).processID;
  for (let attempt = 0; attempt < 200; attempt++) {
    const waiting = await count(
      db,
      `SELECT count(*) FROM pg_stat_activity WHERE pid = $1 AND wait_event_type = 'Lock'`,
      [pid],
    );
    if (waiting === 1) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  assert.fail('the second call never waited for the first');
}
