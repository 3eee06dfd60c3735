import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { runDoctor } from '../../src/doctor/doctor.ts';
import { type Environment, startEnvironment } from '../support/environment.ts';
import { freePort } from '../support/postgrest/tcp-forwarder.ts';
import { declareQueue, uniqueName, withBroker } from '../support/rabbit.ts';

/**
 * `pgq-bridge doctor` against the real broker and the RPC server: each deployment fault is
 * caught by its check, with its fix, and only a sound deployment exits 0.
 */

const secret = 'doctor-test-secret-that-is-long-enough-for-postgrest';

describe('pgq-bridge doctor', { timeout: 120_000 }, () => {
  let env: Environment;
  const dir = mkdtempSync(join(tmpdir(), 'pgq-bridge-doctor-'));
  const quorumDlq = uniqueName('pgqb-doctor-quorum-dlq');

  before(async () => {
    env = await startEnvironment('doctor', { server: { jwtSecret: secret } });
    await declareQueue(env.amqpUrl, quorumDlq, { 'x-queue-type': 'quorum' });
  });

  after(async () => {
    await withBroker(env.amqpUrl, (broker) => broker.deleteQueues(quorumDlq)).catch(() => undefined);
    await env?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  async function doctor(config: Record<string, unknown>): Promise<{ code: number; text: string }> {
    const path = join(dir, `${uniqueName('config')}.json`);
    writeFileSync(path, JSON.stringify(config));
    let text = '';
    const code = await runDoctor(path, {}, { write: (chunk: string) => (text += chunk) });
    return { code, text };
  }

  /** The failing line of `check` and the fix under it. */
  function failure(text: string, check: string): { line: string; fix: string } {
    const lines = text.split('\n');
    const at = lines.findIndex((line) => line.startsWith(`[FAIL] ${check}`));
    assert.ok(at >= 0, `no failed check "${check}" in:\n${text}`);
    return { line: lines[at] ?? '', fix: lines[at + 1] ?? '' };
  }

  const withPostgrest = (postgrest: Record<string, unknown>) =>
    env.bridgeConfig({ top: { postgrest: { url: env.server.url, timeoutMs: 3000, ...postgrest } } });

  it('passes a sound deployment with exit code 0', async () => {
    const { code, text } = await doctor(withPostgrest({ jwt: { secret, role: 'pgqapi' } }));
    assert.equal(code, 0, text);
    assert.doesNotMatch(text, /\[FAIL\]/);
    assert.match(text, /\[ ok \] function fn_pgqueuer_enqueue callable/);
    assert.match(text, /all \d+ checks passed/);
  });

  it('catches a broker that is down', async () => {
    const port = await freePort();
    const { code, text } = await doctor(
      env.bridgeConfig({
        top: { amqp: { url: `amqp://guest:guest@127.0.0.1:${port}`, connectTimeoutMs: 2000 } },
      }),
    );
    assert.equal(code, 1);
    const { line, fix } = failure(text, 'broker reachable');
    assert.match(line, /ECONNREFUSED/);
    assert.match(fix, /fix: start RabbitMQ, or correct the host and port of amqp\.url/);
    assert.match(text, /\[skip\] broker login accepted/);
  });

  it('catches a wrong password', async () => {
    const url = new URL(env.amqpUrl);
    url.password = 'not-the-password';
    const { code, text } = await doctor(env.bridgeConfig({ top: { amqp: { url: url.toString() } } }));
    assert.equal(code, 1);
    const { line, fix } = failure(text, 'broker login accepted');
    assert.match(line, /refused the login of user/);
    assert.match(fix, /fix: correct the user and password in amqp\.url/);
  });

  it('catches a missing virtual host', async () => {
    const url = new URL(env.amqpUrl);
    url.pathname = `/${uniqueName('no-such-vhost')}`;
    const { code, text } = await doctor(env.bridgeConfig({ top: { amqp: { url: url.toString() } } }));
    assert.equal(code, 1);
    const { line, fix } = failure(text, 'virtual host open to the user');
    assert.match(line, /refused virtual host/);
    assert.match(fix, /fix: create the virtual host/);
  });

  it('catches a dead-letter queue of another type', async () => {
    const { code, text } = await doctor(env.bridgeConfig({ source: { deadLetterQueue: quorumDlq } }));
    assert.equal(code, 1);
    const { line, fix } = failure(text, `dead-letter queue ${quorumDlq} routable`);
    assert.match(line, /406 PRECONDITION_FAILED/);
    assert.match(fix, /sources\.0\.deadLetterQueueArguments/);
  });

  it('catches an endpoint that is down', async () => {
    const port = await freePort();
    const { code, text } = await doctor(withPostgrest({ url: `http://127.0.0.1:${port}` }));
    assert.equal(code, 1);
    const { line, fix } = failure(text, 'endpoint reachable');
    assert.match(line, /ECONNREFUSED/);
    assert.match(fix, /fix: start PostgREST, or correct postgrest\.url/);
  });

  it('catches a wrong function name', async () => {
    const { code, text } = await doctor(withPostgrest({ function: 'fn_pgqueuer_enqueu' }));
    assert.equal(code, 1);
    const { line, fix } = failure(text, 'function fn_pgqueuer_enqueu callable');
    assert.match(line, /lists no function fn_pgqueuer_enqueu .*it lists: fn_pgqueuer_enqueue/);
    assert.match(fix, /correct postgrest\.function/);
  });

  it('catches a JWT that PostgREST refuses', async () => {
    const { code, text } = await doctor(
      withPostgrest({ jwt: { secret: 'a-different-secret-that-is-long-enough-too', role: 'pgqapi' } }),
    );
    assert.equal(code, 1);
    const { line, fix } = failure(text, 'JWT accepted');
    assert.match(line, /refuses the token: PGRST301/);
    assert.match(fix, /jwt-secret/);
    assert.match(text, /\[skip\] function fn_pgqueuer_enqueue callable/);
  });
});
