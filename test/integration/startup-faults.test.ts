import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { startApp } from '../support/app.ts';
import { BridgeProcess } from '../support/bridge-process.ts';
import { type Environment, startEnvironment } from '../support/environment.ts';
import { declareQueue, uniqueName, waitFor, withBroker } from '../support/rabbit.ts';

/**
 * Configuration faults are not weather: a broker that refuses the config at start ends the
 * process with 78 and one line naming the key. A broker that accepts TCP and never answers is
 * retried with a deadline per attempt, and does not hold SIGTERM past the grace. A function the
 * endpoint does not list keeps /readyz from 200, and says why.
 */

describe('faults at start', { timeout: 120_000 }, () => {
  let env: Environment;
  const quorumDlq = uniqueName('pgqb-start-quorum-dlq');

  before(async () => {
    env = await startEnvironment('startup');
    await declareQueue(env.amqpUrl, quorumDlq, { 'x-queue-type': 'quorum' });
  });

  after(async () => {
    await withBroker(env.amqpUrl, (broker) => broker.deleteQueues(quorumDlq)).catch(() => undefined);
    await env?.close();
  });

  async function exitOf(config: Record<string, unknown>): Promise<{ code: number | null; stderr: string }> {
    const bridge = new BridgeProcess(config);
    const exit = await Promise.race([
      bridge.exited,
      new Promise<never>((_, reject) => setTimeout(() => reject(new Error('did not exit')), 30_000)),
    ]).finally(() => bridge.stop('SIGKILL'));
    return { code: exit.code, stderr: bridge.stderr.join('') };
  }

  it('exits 78 naming amqp.url when the broker refuses the login', async () => {
    const url = new URL(env.amqpUrl);
    url.password = 'not-the-password';
    const { code, stderr } = await exitOf(env.bridgeConfig({ top: { amqp: { url: url.toString() } } }));
    assert.equal(code, 78);
    const lines = stderr.trim().split('\n');
    assert.equal(lines.length, 1, stderr);
    assert.match(lines[0] ?? '', /^pgq-bridge: amqp\.url: the broker refused the login of user/);
  });

  it('exits 78 naming the dead-letter arguments when the declare is refused (406)', async () => {
    const { code, stderr } = await exitOf(env.bridgeConfig({ source: { deadLetterQueue: quorumDlq } }));
    assert.equal(code, 78);
    assert.match(
      stderr.trim(),
      /^pgq-bridge: sources\.0\.deadLetterQueueArguments: queue .* \(406 PRECONDITION_FAILED\)/,
    );
    assert.equal(stderr.trim().split('\n').length, 1, stderr);
  });

  it('retries a broker that never answers the handshake, and SIGTERM exits within the grace', async () => {
    const sockets: net.Socket[] = [];
    const frozen = net.createServer((socket) => sockets.push(socket));
    await new Promise<void>((resolve) => frozen.listen(0, '127.0.0.1', resolve));
    const { port } = frozen.address() as net.AddressInfo;
    const graceMs = 2000;
    const bridge = new BridgeProcess(
      env.bridgeConfig({
        top: {
          amqp: {
            url: `amqp://guest:guest@127.0.0.1:${port}`,
            connectTimeoutMs: 300,
            reconnectInitialDelayMs: 50,
            reconnectMaxDelayMs: 200,
          },
          shutdown: { graceMs },
        },
      }),
    );
    try {
      // Two connections (consumer and publisher) per round: more than that means retries.
      await waitFor(() => sockets.length >= 4, { timeoutMs: 20_000, message: 'attempts to be retried' });
      const started = Date.now();
      const exit = await bridge.stop('SIGTERM');
      const took = Date.now() - started;
      assert.equal(exit.code, 0, bridge.stderr.join(''));
      // Generous margin over the grace for a loaded machine; a stuck close would never end.
      assert.ok(took < graceMs + 8000, `exit took ${took} ms`);
      const lines = bridge.logs.filter(
        (r) => r.msg === 'cannot connect to the broker; retrying with backoff',
      );
      assert.ok(lines.length <= 2, 'one line per connection while nothing changes');
    } finally {
      await bridge.stop('SIGKILL');
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => frozen.close(resolve));
    }
  });

  it('is not ready while the endpoint does not list the function, and says why', async () => {
    const { app } = await startApp(
      env.bridgeConfig({ top: { postgrest: { url: env.server.url, function: 'fn_not_installed' } } }),
    );
    try {
      await waitFor(() => /fn_not_installed/.test(String(app.status().reason)), {
        timeoutMs: 10_000,
        message: 'the reason to name the function',
      });
      assert.equal(app.ready, false);
      assert.match(
        String(app.status().reason),
        /^postgrest\.function: PostgREST lists no function fn_not_installed/,
      );
      const res = await fetch(`http://127.0.0.1:${app.httpPort}/readyz`);
      assert.equal(res.status, 503);
      const body = (await res.json()) as Record<string, unknown>;
      assert.equal(body.endpointReady, false);
      const metrics = await (await fetch(`http://127.0.0.1:${app.httpPort}/metrics`)).text();
      assert.match(metrics, /pgq_bridge_ready_reason\{reason="function_missing"\} 1/);
      assert.match(metrics, /pgq_bridge_endpoint_ready 0/);
    } finally {
      await app.stop();
    }
  });
});
