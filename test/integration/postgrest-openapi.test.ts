// The test server's OpenAPI root against what PostgREST 10.1.2 answers: the functions the
// request role may execute under `/rpc/<name>`, their arguments in the POST body schema; all
// of them with ignore-privileges; 404 `{}` with openapi-mode=disabled. And the bridge's probe
// reading it.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { expectedFunctions, probeEndpoint } from '../../src/postgrest/probe.ts';
import { createScratchDatabase, type ScratchDatabase } from '../support/pg.ts';
import { httpRequest } from '../support/postgrest/recordings.ts';
import { type PostgrestServer, startPostgrestServer } from '../support/postgrest/server.ts';

const single = expectedFunctions({
  postgrest: { function: 'fn_pgqueuer_enqueue' },
  batch: { enabled: false, function: 'unused' },
} as Parameters<typeof expectedFunctions>[0]);

describe('the OpenAPI root of the test server', { timeout: 60_000 }, () => {
  let db: ScratchDatabase;
  const servers: PostgrestServer[] = [];
  const start = async (options: Partial<Parameters<typeof startPostgrestServer>[0]> = {}) => {
    const server = await startPostgrestServer({ dbUri: db.connectionString, anonRole: 'pgqapi', ...options });
    servers.push(server);
    return server;
  };
  const root = async (server: PostgrestServer) => {
    const answer = await httpRequest(server.port, {
      method: 'GET',
      path: '/',
      headers: { Accept: 'application/openapi+json', Connection: 'close' },
    });
    return { status: answer.status, type: answer.headers['content-type'], body: answer.body };
  };

  before(async () => {
    db = await createScratchDatabase('pgrst_openapi');
  });

  after(async () => {
    for (const server of servers) await server.close();
    await db?.drop();
  });

  test('lists the functions the role may execute, with their arguments', async () => {
    const server = await start();
    const answer = await root(server);
    assert.equal(answer.status, 200);
    assert.equal(answer.type, 'application/openapi+json; charset=utf-8');
    const spec = JSON.parse(answer.body);
    assert.equal(spec.swagger, '2.0');
    const post = spec.paths['/rpc/fn_pgqueuer_enqueue'].post;
    assert.deepEqual(post.tags, ['(rpc) fn_pgqueuer_enqueue']);
    const [args, prefer] = post.parameters;
    assert.deepEqual(prefer, { $ref: '#/parameters/preferParams' });
    assert.deepEqual([args.in, args.name, args.required], ['body', 'args', true]);
    assert.deepEqual(args.schema.required, ['entrypoint']);
    assert.deepEqual(Object.keys(args.schema.properties), [
      'entrypoint',
      'payload',
      'priority',
      'execute_after',
      'dedupe_key',
      'headers',
    ]);
    assert.deepEqual(args.schema.properties.headers, { format: 'jsonb' });
    assert.deepEqual(args.schema.properties.priority, { format: 'integer', type: 'integer' });
    assert.equal(post.get, undefined);
  });

  test('leaves out a function the role may not execute, unless privileges are ignored', async () => {
    await db.pool.query(`
      CREATE FUNCTION private_fn(a text) RETURNS int LANGUAGE sql AS $$ SELECT 1 $$;
      REVOKE EXECUTE ON FUNCTION private_fn(text) FROM PUBLIC;`);
    const follow = await start();
    assert.equal(JSON.parse((await root(follow)).body).paths['/rpc/private_fn'], undefined);
    const ignore = await start({ openApiMode: 'ignore-privileges' });
    assert.ok(JSON.parse((await root(ignore)).body).paths['/rpc/private_fn'] !== undefined);
  });

  test('answers 404 {} when disabled, and the probe says it cannot verify', async () => {
    const server = await start({ openApiMode: 'disabled' });
    assert.deepEqual(await root(server), {
      status: 404,
      type: 'application/json; charset=utf-8',
      body: '{}',
    });
    const report = await probeEndpoint({ url: server.url, timeoutMs: 2000, functions: single });
    assert.deepEqual(report.verdict.ok && report.verdict.verified, false);
    assert.match(report.verdict.reason, /first call proves/);
  });

  test('the probe finds the function, a missing one, and missing arguments', async () => {
    const server = await start();
    const ok = await probeEndpoint({ url: server.url, timeoutMs: 2000, functions: single });
    assert.deepEqual(ok.verdict.ok && ok.verdict.verified, true);
    assert.equal(ok.server, 'postgrest/10.1.2');
    assert.ok(ok.serverDate !== undefined);
    const [fn] = single;
    assert.ok(fn !== undefined);
    const missing = await probeEndpoint({
      url: server.url,
      timeoutMs: 2000,
      functions: [{ ...fn, name: 'fn_pgqueuer_enqueu' }],
    });
    assert.deepEqual(missing.verdict.ok ? undefined : missing.verdict.kind, 'function_missing');
    const extra = await probeEndpoint({
      url: server.url,
      timeoutMs: 2000,
      functions: [{ ...fn, sometimes: [...fn.sometimes, 'queue'] }],
    });
    assert.deepEqual(extra.verdict.ok ? undefined : extra.verdict.kind, 'arguments_mismatch');
  });
});
