// The PostgREST-compatible test server against what real PostgREST does.
//
// First the 96 requests recorded against PostgREST 10.1.2 are replayed in file order, and
// status, the recorded headers and the body are compared byte for byte. The database is set
// up as the recordings describe, and the changes they made between cases (new functions, a
// finished job, killed connections, a cut network link) are made at the same points.
// Then the controls other tests rely on: injected faults, stop/start, pool limits, flavours.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import {
  connectionString,
  createScratchDatabase,
  ensureRoles,
  pgSettings,
  type ScratchDatabase,
} from '../support/pg.ts';
import {
  type HttpAnswer,
  httpRequest,
  loadRecordings,
  mintToken,
  type RecordedCase,
  replayRequest,
} from '../support/postgrest/recordings.ts';
import {
  createPostgrestServer,
  type FaultKind,
  type PostgrestServer,
  type PostgrestServerOptions,
  type ServerStats,
  startPostgrestServer,
} from '../support/postgrest/server.ts';
import { freePort, TcpForwarder } from '../support/postgrest/tcp-forwarder.ts';
import { waitFor } from '../support/rabbit.ts';

type Config = 'A' | 'B' | 'C' | 'D' | 'E' | 'F';

// The recordings reached PostgreSQL for configuration E through a forwarder on this port,
// which shows in libpq's error text.
const RECORDED_FORWARDER_PORT = 5498;
// Headers the recordings kept; each must be present with the recorded value, or absent.
const RECORDED_HEADERS = [
  'content-type',
  'content-range',
  'www-authenticate',
  'retry-after',
  'proxy-status',
  'location',
];
// Their descriptions say these Retry-After values follow PostgREST's reconnect back-off.
const TIMING_DEPENDENT_RETRY_AFTER = new Set(['74c-db-link-cut-3s-later', '74e-db-link-cut-no-token']);
const JWT_SECRET = randomBytes(24).toString('hex');
const AUTHENTICATOR = { user: 'authenticator', password: 'authenticator-test-password' };
const JSON_HEADERS = { 'Content-Type': 'application/json', Connection: 'close' };

function configOf(recorded: RecordedCase): Config {
  const config = /^Config ([A-F])\b/.exec(recorded.setup)?.[1];
  assert.ok(config !== undefined, `no configuration in the setup of ${recorded.id}`);
  return config as Config;
}

function assertRecordedAnswer(
  recorded: RecordedCase,
  answer: HttpAnswer,
  forwarderPort: number | undefined,
): void {
  const expected = recorded.response;
  assert.equal(answer.status, expected.status, `status; body ${answer.body}`);
  for (const name of RECORDED_HEADERS) {
    const value = answer.headers[name];
    if (name === 'retry-after' && TIMING_DEPENDENT_RETRY_AFTER.has(recorded.id)) {
      assert.match(String(value), /^\d+$/, name);
    } else {
      assert.equal(value, expected.headers[name], name);
    }
  }
  // 10.1.2 streams every answer.
  assert.equal(answer.headers['transfer-encoding'], 'chunked');
  assert.equal(answer.headers['content-length'], undefined);
  assert.equal(answer.headers.server, 'postgrest/10.1.2');
  // Only if port 5498 was taken on this machine does the forwarder's port differ from the recording.
  const body = expected.body?.replace(
    `port ${RECORDED_FORWARDER_PORT} failed`,
    `port ${forwarderPort} failed`,
  );
  if (body?.includes('<timestamp>')) {
    const timestamp = String.raw`\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(?:\.\d+)?[+-]\d{2}(?::\d{2})?`;
    const pattern = body.split('<timestamp>').map(escapeRegExp).join(timestamp);
    assert.match(answer.body, new RegExp(`^${pattern}$`));
  } else {
    assert.equal(answer.body, body);
  }
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

function isConnectionError(code: string): (error: unknown) => boolean {
  return (error) => error instanceof Error && 'code' in error && error.code === code;
}

describe('PostgREST 10.1.2 recordings replayed against the test server', { timeout: 120_000 }, () => {
  let db: ScratchDatabase;
  let forwarder: TcpForwarder | undefined;
  const servers = new Map<Config, PostgrestServer>();

  function serverOptions(config: Config, dbUri: string): PostgrestServerOptions {
    const base = {
      dbUri,
      applicationName: `pgrst-replay-${config}`,
      anonRole: 'pgqapi',
      jwtSecret: JWT_SECRET,
    };
    switch (config) {
      case 'B': {
        const { anonRole: _none, ...withoutAnonRole } = base;
        return withoutAnonRole;
      }
      case 'D':
        return { ...base, txEnd: 'commit-allow-override' };
      case 'F': {
        const { jwtSecret: _none, ...withoutSecret } = base;
        return withoutSecret;
      }
      default:
        return base;
    }
  }

  async function server(config: Config): Promise<PostgrestServer> {
    const running = servers.get(config);
    if (running !== undefined) return running;
    const { host, port } = pgSettings();
    let dbPort = port;
    if (config === 'C') dbPort = await freePort();
    if (config === 'E') {
      forwarder ??= await TcpForwarder.start({ host, port }, RECORDED_FORWARDER_PORT);
      dbPort = forwarder.port;
    }
    const options = serverOptions(config, connectionString(db.name, AUTHENTICATOR, dbPort));
    // C's database never answers, so its HTTP port is fixed up front and it is never awaited.
    const created = createPostgrestServer(config === 'C' ? { ...options, port: await freePort() } : options);
    servers.set(config, created);
    if (config !== 'C') await created.ready;
    return created;
  }

  function stats(config: Config): ServerStats {
    const running = servers.get(config);
    assert.ok(running !== undefined, `server ${config} is not running`);
    return running.stats();
  }

  async function reloadSchemaCache(): Promise<void> {
    const loads = stats('A').schemaCacheLoads;
    await db.pool.query(`NOTIFY pgrst, 'reload schema'`);
    await waitFor(() => stats('A').schemaCacheLoads > loads, { message: 'the schema cache reload' });
  }

  async function createEnqueue2(parameter: string): Promise<void> {
    await db.pool.query(`
      CREATE FUNCTION fn_pgqueuer_enqueue2(${parameter} text) RETURNS bigint
      LANGUAGE sql AS $$ SELECT fn_pgqueuer_enqueue(${parameter}) $$;
      REVOKE EXECUTE ON FUNCTION fn_pgqueuer_enqueue2(text) FROM PUBLIC;
      GRANT EXECUTE ON FUNCTION fn_pgqueuer_enqueue2(text) TO worker;`);
  }

  // What was done to the database or the network just before a case was sent.
  const beforeCase: Readonly<Record<string, () => Promise<unknown>>> = {
    '36a-new-function-before-reload': () => createEnqueue2('entrypoint'),
    '36b-new-function-after-reload': reloadSchemaCache,
    '36c-stale-cache-after-param-rename': async () => {
      await db.pool.query('DROP FUNCTION fn_pgqueuer_enqueue2(text)');
      await createEnqueue2('ep');
    },
    '37a-db-unreachable-2s-after-start': async () => {
      await db.pool.query('DROP FUNCTION fn_pgqueuer_enqueue2(text)');
      await reloadSchemaCache();
      await server('C');
      await waitFor(() => stats('C').failedConnectionAttempts >= 1, { message: 'a failed start-up attempt' });
    },
    '37b-db-unreachable-8s-after-start': () =>
      waitFor(() => stats('C').failedConnectionAttempts >= 2, { message: 'a second failed attempt' }),
    '69-dedupe-after-first-done': () =>
      db.pool.query(`UPDATE pgqueuer SET status = 'successful' WHERE id = 2`),
    '73-pool-connections-terminated': async () => {
      const broken = stats('A').brokenConnections;
      const { rows } = await db.pool.query<{ pid: number }>(
        `SELECT pid FROM pg_stat_activity WHERE datname = $1 AND application_name = 'pgrst-replay-A'`,
        [db.name],
      );
      assert.ok(rows.length > 0, 'server A holds no pooled connection');
      const pids = rows.map((row) => row.pid);
      await db.pool.query('SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) AS pid', [pids]);
      await waitFor(() => stats('A').brokenConnections >= broken + pids.length, {
        message: 'the dead connections',
      });
    },
    '73c-third-request-1s-later': () =>
      waitFor(() => !stats('A').recovering, { message: 'the pool to reconnect' }),
    '74b-db-link-cut-first-request': async () => {
      await forwarder?.cut();
      await waitFor(() => stats('E').failedConnectionAttempts >= 1, { message: 'E to notice the cut' });
    },
    '74f-db-link-restored': async () => forwarder?.restore(),
  };

  before(async () => {
    await ensureRoles([
      { name: 'pgqapi' },
      { name: 'worker' },
      { name: 'outsider' },
      {
        name: 'authenticator',
        login: true,
        inherit: false,
        ...AUTHENTICATOR,
        memberOf: ['pgqapi', 'worker'],
      },
    ]);
    db = await createScratchDatabase('pgrst_replay', { install: { api_role: 'worker' } });
    const { rows } = await db.pool.query<{ ghost: boolean; outsider: boolean }>(`
      SELECT EXISTS (SELECT FROM pg_roles WHERE rolname = 'ghost') AS ghost,
             pg_has_role('authenticator', 'outsider', 'MEMBER') AS outsider`);
    assert.deepEqual(
      rows[0],
      { ghost: false, outsider: false },
      'role "ghost" must not exist, "outsider" not be granted',
    );
    await db.pool.query(`
      CREATE FUNCTION fn_raise_pt429(entrypoint text) RETURNS bigint LANGUAGE plpgsql AS $$
      BEGIN
        RAISE SQLSTATE 'PT429' USING MESSAGE = 'slow down', DETAIL = 'queue is full', HINT = 'retry later';
      END $$;
      CREATE FUNCTION fn_raise_plain(entrypoint text) RETURNS bigint LANGUAGE plpgsql AS $$
      BEGIN
        RAISE EXCEPTION 'entrypoint % is not allowed', entrypoint
          USING DETAIL = 'allowed: e', HINT = 'check the routing key';
      END $$;
      CREATE FUNCTION fn_raise_pgrst(entrypoint text) RETURNS bigint LANGUAGE plpgsql AS $$
      BEGIN
        RAISE SQLSTATE 'PGRST' USING
          MESSAGE = '{"code":"Q001","message":"queue closed","details":"d","hint":"h"}',
          DETAIL = '{"status":418,"headers":{"X-Queue":"closed"}}';
      END $$;
      REVOKE EXECUTE ON FUNCTION fn_raise_pt429(text), fn_raise_plain(text), fn_raise_pgrst(text) FROM PUBLIC;
      GRANT EXECUTE ON FUNCTION fn_raise_pt429(text), fn_raise_plain(text), fn_raise_pgrst(text) TO worker;`);
    await server('A');
  });

  after(async () => {
    await Promise.all([...servers.values()].map((running) => running.close()));
    await forwarder?.close();
    await db?.drop();
  });

  for (const recorded of loadRecordings()) {
    test(recorded.id, async () => {
      await beforeCase[recorded.id]?.();
      const target = await server(configOf(recorded));
      const request = await replayRequest(recorded, JWT_SECRET);
      if (recorded.response.status === null) {
        assert.match(recorded.response.transport_error ?? '', /ECONNREFUSED/);
        await assert.rejects(httpRequest(target.port, request), isConnectionError('ECONNREFUSED'));
        return;
      }
      // After the link came back the recording polled every 0.5 s until the call went through.
      const answer =
        recorded.id === '74f-db-link-restored'
          ? await waitFor(
              async () => {
                const polled = await httpRequest(target.port, request);
                return polled.status === 200 && polled;
              },
              { intervalMs: 500, message: 'a call through the restored link' },
            )
          : await httpRequest(target.port, request);
      assertRecordedAnswer(recorded, answer, forwarder?.port);
      if (recorded.id === '30b-content-profile-public')
        assert.equal(answer.headers['content-profile'], 'public');
      if (recorded.id.startsWith('38')) {
        const applied = recorded.id === '38b-prefer-tx-rollback-allow-override' ? 'tx=rollback' : undefined;
        assert.equal(answer.headers['preference-applied'], applied);
      }
      if (recorded.id === '40a-raise-pt429') assert.equal(answer.statusMessage, 'slow down');
    });
  }

  test('the stored jobs are those the recordings describe', async () => {
    const { rows } = await db.pool.query<Record<string, string | number | boolean | null>>(`
      SELECT id::int, entrypoint, priority, encode(payload, 'hex') AS payload,
             (execute_after - created)::text AS delay, dedupe_key, headers::text AS headers,
             jsonb_typeof(headers) AS headers_type, status::text AS status,
             EXISTS (SELECT FROM pgqueuer_log l WHERE l.job_id = q.id AND l.status = 'queued') AS logged
      FROM pgqueuer q ORDER BY id`);
    const jobs = new Map(rows.map((row) => [Number(row.id), row]));
    // Ids 3, 6 and 7 were drawn by calls that failed inside the INSERT; 14 was rolled back.
    const expectedIds = Array.from({ length: 34 }, (_, i) => i + 1).filter(
      (id) => ![3, 6, 7, 14].includes(id),
    );
    assert.deepEqual([...jobs.keys()], expectedIds);
    assert.ok(
      rows.every((row) => row.logged),
      'every job has its queued log row',
    );
    const job = (id: number, ...columns: string[]) => columns.map((column) => jobs.get(id)?.[column]);
    assert.deepEqual(job(1, 'priority', 'payload', 'delay', 'headers'), [0, null, '00:00:00', null]);
    assert.deepEqual(
      job(2, 'entrypoint', 'payload', 'priority', 'delay', 'dedupe_key', 'headers', 'status'),
      ['full', '68656c6c6f', 5, '00:00:10', 'K1', '{"n": 1, "trace": "t-1"}', 'successful'],
    );
    assert.deepEqual(job(4, 'payload'), ['614756736247383d']);
    assert.deepEqual(job(5, 'priority'), [7]);
    assert.deepEqual(job(8, 'entrypoint'), ['arr1']);
    assert.deepEqual(job(10, 'headers_type'), ['array']);
    assert.deepEqual(job(13, 'entrypoint'), ['rb1']);
    assert.deepEqual(job(18, 'entrypoint', 'priority'), ['form', 3]);
    assert.deepEqual([...job(20, 'entrypoint'), ...job(21, 'entrypoint')], ['multi1', 'multi2']);
    assert.deepEqual(job(25, 'payload'), ['']);
    assert.deepEqual(job(26, 'delay'), ['00:00:10']);
    assert.deepEqual(job(27, 'entrypoint'), ['123']);
    assert.deepEqual(job(28, 'headers_type'), ['string']);
    assert.deepEqual(job(29, 'entrypoint'), ['dup2']);
    assert.deepEqual(job(30, 'dedupe_key', 'status'), ['K1', 'queued']);
    assert.deepEqual(
      [32, 33, 34].flatMap((id) => job(id, 'entrypoint')),
      ['term3', 'px1', 'px6'],
    );
    const big = await db.pool.query('SELECT length(payload), md5(payload) FROM pgqueuer WHERE id = 11');
    assert.deepEqual(big.rows, [{ length: 1_048_576, md5: '096003817ad2638000a6836e55866697' }]);
  });
});

describe('test server controls', { timeout: 60_000 }, () => {
  let db: ScratchDatabase;
  let server: PostgrestServer;
  const enqueue = (entrypoint: string): Promise<HttpAnswer> =>
    httpRequest(server.port, {
      method: 'POST',
      path: '/rpc/fn_pgqueuer_enqueue',
      headers: JSON_HEADERS,
      body: JSON.stringify({ entrypoint }),
    });
  const sleepingBackends = async (): Promise<number> => {
    const { rows } = await db.pool.query(
      `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1 AND wait_event = 'PgSleep'`,
      [db.name],
    );
    return rows[0].n;
  };
  const jobCount = async (entrypoint: string): Promise<number> =>
    (await db.pool.query('SELECT count(*)::int AS n FROM pgqueuer WHERE entrypoint = $1', [entrypoint]))
      .rows[0].n;

  before(async () => {
    db = await createScratchDatabase('pgrst_controls');
    await db.pool.query(`
      CREATE FUNCTION slow(seconds double precision) RETURNS integer LANGUAGE sql AS $$ SELECT 1 FROM pg_sleep(seconds) $$;
      GRANT EXECUTE ON FUNCTION slow(double precision) TO pgqapi;`);
    server = await startPostgrestServer({
      dbUri: db.connectionString,
      anonRole: 'pgqapi',
      poolSize: 2,
      poolAcquisitionTimeoutMs: 300,
    });
  });

  after(async () => {
    await server?.close();
    await db?.drop();
  });

  test('a bigint id is answered with all its digits', async () => {
    await db.pool.query(`SELECT setval('pgqueuer_id_seq', 9007199254740992)`);
    const answer = await enqueue('big-id');
    assert.equal(answer.body, '9007199254740993');
  });

  test('stop() refuses connections until start() reopens the same port', async () => {
    const port = server.port;
    await server.stop();
    await assert.rejects(enqueue('while-stopped'), isConnectionError('ECONNREFUSED'));
    await server.start();
    assert.equal(server.port, port);
    assert.equal((await enqueue('after-start')).status, 200);
  });

  const faults: ReadonlyArray<readonly [FaultKind, number, string]> = [
    ['PGRST000', 503, 'PGRST000'],
    ['PGRST001', 503, 'PGRST001'],
    ['PGRST002', 503, 'PGRST002'],
    ['PGRST003', 504, 'PGRST003'],
    ['57P01', 500, '57P01'],
    ['57014', 500, '57014'],
    ['40001', 500, '40001'],
    ['53300', 503, '53300'],
  ];
  for (const [kind, status, code] of faults) {
    test(`injected ${kind} answers ${status} once, then calls go through`, async () => {
      server.injectFault({ kind, times: 1 });
      const answer = await enqueue(`fault-${kind}`);
      assert.equal(answer.status, status);
      assert.equal(JSON.parse(answer.body).code, code);
      assert.equal(answer.headers['retry-after'], status === 503 ? '0' : undefined);
      assert.equal((await enqueue(`fault-${kind}`)).status, 200);
      assert.equal(await jobCount(`fault-${kind}`), 1);
    });
  }

  test('a proxy fault answers with its HTML page until cleared', async () => {
    const clear = server.injectFault({ kind: 'bad-gateway' });
    for (let i = 0; i < 2; i++) {
      const answer = await enqueue('proxy');
      assert.deepEqual([answer.status, answer.headers['content-type']], [502, 'text/html']);
    }
    clear();
    assert.equal((await enqueue('proxy')).status, 200);
  });

  test('faults can be limited to matching requests', async () => {
    server.injectFault({ kind: 'gateway-timeout', match: (request) => request.path === '/rpc/slow' });
    assert.equal((await enqueue('unmatched')).status, 200);
    const slow = await httpRequest(server.port, {
      method: 'POST',
      path: '/rpc/slow',
      headers: JSON_HEADERS,
      body: '{}',
    });
    assert.equal(slow.status, 504);
    server.clearFaults();
  });

  test('a reset after the commit loses the answer but not the job', async () => {
    server.injectFault({ kind: 'reset', when: 'after-commit', times: 1 });
    await assert.rejects(enqueue('reset-after-commit'), isConnectionError('ECONNRESET'));
    assert.equal(await jobCount('reset-after-commit'), 1);
    server.injectFault({ kind: 'reset', times: 1 });
    await assert.rejects(enqueue('reset-before-call'), isConnectionError('ECONNRESET'));
    assert.equal(await jobCount('reset-before-call'), 0);
  });

  test('a call that never gets an answer, until the fault is cleared', async () => {
    server.injectFault({ kind: 'hang' });
    const request = {
      method: 'POST',
      path: '/rpc/fn_pgqueuer_enqueue',
      headers: JSON_HEADERS,
      body: '{"entrypoint":"hang"}',
      timeoutMs: 200,
    };
    await assert.rejects(httpRequest(server.port, request), isConnectionError('ETIMEDOUT'));
    server.clearFaults();
    assert.equal((await httpRequest(server.port, request)).status, 200);
  });

  test('a connection killed during a call: its error, then PGRST001 once, then the pool is renewed', async () => {
    const call = httpRequest(server.port, {
      method: 'POST',
      path: '/rpc/slow',
      headers: JSON_HEADERS,
      body: '{"seconds":5}',
    });
    await waitFor(async () => (await sleepingBackends()) === 1, { message: 'the call to sleep' });
    await db.pool.query(
      `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND wait_event = 'PgSleep'`,
      [db.name],
    );
    const killed = await call;
    assert.deepEqual([killed.status, JSON.parse(killed.body).code], [500, '57P01']);
    const next = await enqueue('after-kill');
    assert.deepEqual(
      [next.status, JSON.parse(next.body).code, next.headers['retry-after']],
      [503, 'PGRST001', '0'],
    );
    await waitFor(() => !server.stats().recovering, { message: 'the pool to be renewed' });
    assert.equal((await enqueue('after-kill')).status, 200);
  });

  test('a busy pool answers 504 PGRST003 after the acquisition timeout', async () => {
    const sleepFor = (seconds: number): Promise<HttpAnswer> =>
      httpRequest(server.port, {
        method: 'POST',
        path: '/rpc/slow',
        headers: JSON_HEADERS,
        body: `{"seconds":${seconds}}`,
      });
    const holders = [sleepFor(1), sleepFor(1)];
    await waitFor(async () => (await sleepingBackends()) === 2, { message: 'both pooled connections busy' });
    const started = Date.now();
    const answer = await sleepFor(0);
    assert.equal(answer.status, 504);
    assert.equal(
      answer.body,
      '{"code":"PGRST003","details":null,"hint":null,"message":"Timed out acquiring connection from connection pool."}',
    );
    assert.ok(Date.now() - started >= 250, 'waited for the acquisition timeout');
    assert.deepEqual(
      (await Promise.all(holders)).map((held) => held.status),
      [200, 200],
    );
  });

  test('setDelay() adds latency to every call; stats() counts answers', async () => {
    server.resetStats();
    server.setDelay(150);
    const started = Date.now();
    assert.equal((await enqueue('delayed')).status, 200);
    assert.ok(Date.now() - started >= 150);
    server.setDelay(0);
    assert.deepEqual(server.stats().byStatus, { 200: 1 });
    assert.equal(server.stats().requests, 1);
  });

  test("the v14 flavour answers with v14's texts and statuses", async () => {
    const v14 = await startPostgrestServer({
      dbUri: db.connectionString,
      anonRole: 'pgqapi',
      jwtSecret: JWT_SECRET,
      flavor: 'v14',
    });
    try {
      const post = (headers: Record<string, string>, body: string) =>
        httpRequest(v14.port, {
          method: 'POST',
          path: '/rpc/fn_pgqueuer_enqueue',
          headers: { ...JSON_HEADERS, ...headers },
          body,
        });
      const invalid = await post({}, '{"entrypoint":');
      assert.equal(
        invalid.body,
        '{"code":"PGRST102","details":null,"hint":null,"message":"Empty or invalid json"}',
      );
      assert.equal(invalid.headers['proxy-status'], 'PostgREST; error=PGRST102');
      assert.equal(invalid.headers['content-length'], String(invalid.body.length));
      const ghost = await post(
        {
          Authorization: `Bearer ${await mintToken('ghost', 'as <jwt:ghost>: claims {"role":"ghost"}', JWT_SECRET)}`,
        },
        '{"entrypoint":"e"}',
      );
      assert.deepEqual([ghost.status, ghost.headers['www-authenticate']], [401, 'Bearer']);
      const expired = await post(
        {
          Authorization: `Bearer ${await mintToken('old', `<jwt:old>: claims {"role":"pgqapi","exp":${Math.floor(Date.now() / 1000) - 10}}`, JWT_SECRET)}`,
        },
        '{"entrypoint":"e"}',
      );
      assert.equal(expired.status, 200, 'a token expired 10 s ago is still inside the 30 s skew');
      const html = await post({ Accept: 'text/html' }, '{"entrypoint":"e"}');
      assert.equal(html.status, 406);
      const strict = await post({ Prefer: 'handling=strict, params=single-object' }, '{"entrypoint":"e"}');
      assert.equal(
        strict.body,
        '{"code":"PGRST122","details":"Invalid preferences: params=single-object","hint":null,"message":"Invalid preferences given with handling=strict"}',
      );
    } finally {
      await v14.close();
    }
  });
});
