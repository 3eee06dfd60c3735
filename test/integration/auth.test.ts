import assert from 'node:assert/strict';
import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, before, describe, it } from 'node:test';
import { SignJWT } from 'jose';
import type { App } from '../../src/app.ts';
import { metricValue, startApp } from '../support/app.ts';
import { type Environment, startEnvironment } from '../support/environment.ts';
import { ensureRoles } from '../support/pg.ts';
import { waitFor } from '../support/rabbit.ts';

/**
 * Authentication to PostgREST: the server switches to the role named by the JWT; its anonymous
 * role has no grants at all, so only an authenticated bridge can enqueue.
 */

const secret = 'auth-test-secret-that-is-long-enough-for-postgrest';
const anonRole = 'pgqb_auth_anon';

function mint(claims: Record<string, unknown>, expiresAt: number): Promise<string> {
  return new SignJWT(claims)
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setExpirationTime(expiresAt)
    .sign(new TextEncoder().encode(secret));
}

describe('authentication to PostgREST', () => {
  let env: Environment;
  let app: App | undefined;
  const dir = mkdtempSync(join(tmpdir(), 'pgq-bridge-auth-'));

  before(async () => {
    await ensureRoles([{ name: anonRole }]);
    env = await startEnvironment('auth', { server: { jwtSecret: secret, anonRole } });
  });

  afterEach(async () => {
    await app?.stop();
    app = undefined;
  });

  after(async () => {
    await env?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  async function jobCount(entrypoint: string): Promise<number> {
    const { rows } = await env.db.pool.query<{ n: number }>(
      'SELECT count(*)::int AS n FROM pgqueuer WHERE entrypoint = $1',
      [entrypoint],
    );
    return rows[0]?.n ?? 0;
  }

  it('mints short-lived JWTs for its role and enqueues with them', async () => {
    ({ app } = await startApp(
      env.bridgeConfig({
        top: { postgrest: { url: env.server.url, jwt: { secret, role: 'pgqapi', expiresInSeconds: 60 } } },
      }),
    ));
    await env.broker.publish(env.queue, [{ body: '{"entrypoint":"with_jwt"}' }]);
    await waitFor(async () => (await jobCount('with_jwt')) === 1);
  });

  it('holds messages while its token is refused (never dead-letters them) and picks up a rotated token file', async () => {
    const file = join(dir, 'token');
    writeFileSync(file, await mint({ role: 'pgqapi' }, Math.floor(Date.now() / 1000) - 60));
    ({ app } = await startApp(
      env.bridgeConfig({ top: { postgrest: { url: env.server.url, bearerTokenFile: file } } }),
    ));
    const running = app;
    await env.broker.publish(env.queue, [{ body: '{"entrypoint":"with_file"}' }]);
    await waitFor(() => running.status().endpointFailing === true, {
      message: 'the expired token to pause intake',
    });
    assert.equal(await jobCount('with_file'), 0);

    writeFileSync(join(dir, 'next'), await mint({ role: 'pgqapi' }, Math.floor(Date.now() / 1000) + 600));
    renameSync(join(dir, 'next'), file);
    await waitFor(async () => (await jobCount('with_file')) === 1, {
      timeoutMs: 20_000,
      message: 'the job with the new token',
    });
    await env.waitForQueueEmpty(10_000);
    assert.equal(await metricValue(running, 'pgq_bridge_dead_lettered_total'), 0);
  });
});
