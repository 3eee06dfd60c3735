import assert from 'node:assert/strict';
import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { jwtVerify } from 'jose';
import { pino } from 'pino';
import { parseConfig } from '../../src/config/config.ts';
import { ConfigError } from '../../src/errors.ts';
import type { EnqueueArgs } from '../../src/message/args.ts';
import { createTokenSource, withTokenRefresh } from '../../src/postgrest/auth.ts';
import type { RpcResult } from '../../src/postgrest/client.ts';

const logger = pino({ level: 'silent' });
const secret = 'a-shared-secret-of-at-least-32-characters!';

function postgrest(extra: Record<string, unknown>) {
  return parseConfig({
    amqp: { url: 'amqp://h' },
    postgrest: { url: 'http://h', ...extra },
    sources: [{ queue: 'q' }],
  }).postgrest;
}

describe('token sources', () => {
  it('has none without auth settings', async () => {
    assert.equal(await createTokenSource(postgrest({}), logger), undefined);
  });

  it('mints HS256 JWTs with the role claim, the audience and the configured lifetime', async () => {
    const now = Date.UTC(2026, 10, 24, 12, 0, 0);
    const tokens = await createTokenSource(
      postgrest({ jwt: { secret, role: 'worker', expiresInSeconds: 120, audience: 'pgrst' } }),
      logger,
      () => now,
    );
    const token = tokens?.token() ?? '';
    const { payload, protectedHeader } = await jwtVerify(token, new TextEncoder().encode(secret), {
      currentDate: new Date(now),
      audience: 'pgrst',
    });
    assert.equal(protectedHeader.alg, 'HS256');
    assert.equal(payload.role, 'worker');
    assert.equal(payload.exp, now / 1000 + 120);
    tokens?.close();
  });

  it('re-reads a token file that was replaced (as a rotated mounted secret is) on refresh', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pgq-bridge-token-'));
    try {
      const file = join(dir, 'token');
      writeFileSync(file, 'first\n');
      const tokens = await createTokenSource(postgrest({ bearerTokenFile: file }), logger);
      assert.equal(tokens?.token(), 'first');
      writeFileSync(join(dir, 'next'), 'second-and-longer\n');
      renameSync(join(dir, 'next'), file);
      await tokens?.refresh();
      assert.equal(tokens?.token(), 'second-and-longer');
      rmSync(file);
      await tokens?.refresh();
      assert.equal(
        tokens?.token(),
        'second-and-longer',
        'keeps the last good token while the file is missing',
      );
      tokens?.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('names the key when the token file cannot be read', async () => {
    await assert.rejects(
      createTokenSource(postgrest({ bearerTokenFile: '/nonexistent/token' }), logger),
      (error: unknown) =>
        error instanceof ConfigError &&
        /^postgrest\.bearerTokenFile: cannot read/.test(error.problems[0] ?? ''),
    );
  });

  it('refuses more than one way to authenticate, and a short JWT secret', () => {
    assert.throws(
      () => postgrest({ bearerToken: 't', jwt: { secret, role: 'r' } }),
      /choose one of bearerToken, jwt/,
    );
    assert.throws(
      () => postgrest({ jwt: { secret: 'short', role: 'r' } }),
      /postgrest\.jwt\.secret: must be at least 32/,
    );
  });
});

describe('withTokenRefresh', () => {
  const unauthorized: RpcResult = {
    kind: 'http_error',
    status: 401,
    code: 'PGRST301',
    message: 'JWT expired',
    details: null,
    hint: null,
    retryAfterMs: 0,
  };

  it('refreshes once after a 401 and tries again', async () => {
    const answers: RpcResult[] = [unauthorized, { kind: 'enqueued', jobId: '7' }];
    let refreshes = 0;
    const enqueue = withTokenRefresh(async (_args: EnqueueArgs) => answers.shift() ?? unauthorized, {
      token: () => 't',
      refresh: async () => void refreshes++,
      close: () => undefined,
    });
    assert.deepEqual(await enqueue({ entrypoint: 'e' }), { kind: 'enqueued', jobId: '7' });
    assert.equal(refreshes, 1);
  });

  it('returns the second 401, which then counts as an endpoint fault', async () => {
    let calls = 0;
    const enqueue = withTokenRefresh(
      async (_args: EnqueueArgs) => {
        calls++;
        return unauthorized;
      },
      { token: () => 't', refresh: async () => undefined, close: () => undefined },
    );
    assert.deepEqual(await enqueue({ entrypoint: 'e' }), unauthorized);
    assert.equal(calls, 2);
  });

  it('shares one refresh between concurrent 401s', async () => {
    let refreshes = 0;
    let first = true;
    const enqueue = withTokenRefresh(
      async (_args: EnqueueArgs): Promise<RpcResult> =>
        first ? unauthorized : { kind: 'enqueued', jobId: '1' },
      {
        token: () => 't',
        refresh: async () => {
          refreshes++;
          await new Promise((resolve) => setTimeout(resolve, 10));
          first = false;
        },
        close: () => undefined,
      },
    );
    await Promise.all([
      enqueue({ entrypoint: 'a' }),
      enqueue({ entrypoint: 'b' }),
      enqueue({ entrypoint: 'c' }),
    ]);
    assert.equal(refreshes, 1);
  });
});
