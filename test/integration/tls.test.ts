import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { after, afterEach, before, describe, it } from 'node:test';
import tls from 'node:tls';
import { App } from '../../src/app.ts';
import { parseConfig } from '../../src/config/config.ts';
import { createLogger } from '../../src/log.ts';
import { LogSink, metricValue } from '../support/app.ts';
import { type Environment, startEnvironment } from '../support/environment.ts';
import { queueCounts, uniqueName, waitFor } from '../support/rabbit.ts';
import { type PrivateNode, startPrivateNode } from '../support/rabbit-node.ts';
import { createTestPki, type TestPki } from '../support/tls.ts';

/**
 * TLS on both of the bridge's connections, against real services and a CA made for the run:
 * amqps:// to a private RabbitMQ node whose TLS listener requires a client certificate, and
 * https:// to the PostgREST-compatible server behind a TLS terminator. A certificate the bridge
 * cannot verify must leave it up, not ready and retrying, and must never cost a message.
 */

/** Per-wait bound; a TLS handshake on loopback takes milliseconds. */
const WAIT_MS = 20_000;

interface TlsTerminator {
  readonly port: number;
  /** Connections whose handshake completed. */
  readonly handshakes: number;
  /** Connections whose handshake the client broke off (it did not trust the certificate). */
  readonly handshakeFailures: number;
  close(): Promise<void>;
}

/** An https front for a plain http server: TLS ends here and the bytes go on to `targetPort`. */
async function startTlsTerminator(
  pki: TestPki,
  targetHost: string,
  targetPort: number,
): Promise<TlsTerminator> {
  const sockets = new Set<net.Socket>();
  let handshakes = 0;
  let handshakeFailures = 0;
  const track = (socket: net.Socket): void => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  };
  const server = tls.createServer(
    { cert: readFileSync(pki.serverCertFile), key: readFileSync(pki.serverKeyFile) },
    (client) => {
      handshakes++;
      const upstream = net.connect(targetPort, targetHost);
      for (const socket of [client, upstream]) {
        track(socket);
        socket.on('error', () => {
          client.destroy();
          upstream.destroy();
        });
      }
      client.pipe(upstream);
      upstream.pipe(client);
    },
  );
  server.on('connection', track);
  server.on('tlsClientError', () => {
    handshakeFailures++;
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as net.AddressInfo;
  return {
    port,
    get handshakes() {
      return handshakes;
    },
    get handshakeFailures() {
      return handshakeFailures;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const socket of sockets) socket.destroy();
      }),
  };
}

/** GET /readyz on the bridge's own health endpoint; a fresh connection, so nothing lingers. */
function readyz(app: App): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port: app.httpPort, path: '/readyz', agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.setTimeout(5_000, () => req.destroy(new Error('/readyz did not answer')));
    req.on('error', reject);
  });
}

async function within<T>(promise: Promise<T>, timeoutMs: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not within ${timeoutMs} ms`)), timeoutMs);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

interface Bridge {
  readonly app: App;
  readonly logs: LogSink;
}

describe('TLS to the broker and to PostgREST', () => {
  let pki: TestPki | undefined;
  let node: PrivateNode | undefined;
  let env: Environment | undefined;
  let terminator: TlsTerminator | undefined;
  let running: Bridge[] = [];

  before(async () => {
    pki = await createTestPki();
    node = await startPrivateNode({
      tls: {
        caFile: pki.caFile,
        certFile: pki.serverCertFile,
        keyFile: pki.serverKeyFile,
        verifyPeer: true,
        failIfNoPeerCert: true,
      },
    });
    env = await startEnvironment('tls', { amqpUrl: node.url, node: node.nodeName });
    // Declared up front (as the bridge would) so queue counts work in any test, even one run alone.
    const channel = await env.broker.channel();
    await channel.assertQueue(env.queue, { durable: true });
    await channel.assertQueue(env.deadLetterQueue, { durable: true });
    const upstream = new URL(env.server.url);
    terminator = await startTlsTerminator(pki, upstream.hostname, Number(upstream.port));
  });

  afterEach(async () => {
    const bridges = running;
    running = [];
    for (const { app } of bridges) await app.stop();
  });

  after(async () => {
    await terminator?.close();
    await env?.close();
    await node?.stop();
    await pki?.cleanup();
  });

  function ready(): { pki: TestPki; node: PrivateNode; env: Environment; terminator: TlsTerminator } {
    assert.ok(pki && node && env && terminator, 'the suite set up its services');
    return { pki, node, env, terminator };
  }

  function tlsUrl(): string {
    const url = ready().node.tlsUrl;
    assert.ok(url, 'the private node has a TLS listener');
    return url;
  }

  /**
   * Starts a bridge without waiting for the broker (startApp waits without a bound, and some of
   * these bridges must never connect).
   */
  async function launch(
    amqp: { url: string; tls?: Record<string, string> },
    postgrest: { url: string; caFile?: string },
  ): Promise<Bridge> {
    const raw = ready().env.bridgeConfig({
      top: {
        amqp: {
          ...amqp,
          heartbeatSeconds: 5,
          reconnectInitialDelayMs: 100,
          reconnectMaxDelayMs: 1000,
        },
        postgrest: { ...postgrest, timeoutMs: 5000 },
        http: { host: '127.0.0.1', port: 0 },
      },
    });
    const logs = new LogSink();
    const app = new App(parseConfig(raw), createLogger('debug', logs), { processMetrics: false });
    const bridge = { app, logs };
    running.push(bridge);
    await app.start();
    return bridge;
  }

  async function stopBridge(bridge: Bridge): Promise<number> {
    running = running.filter((b) => b !== bridge);
    return bridge.app.stop();
  }

  function untilReady(app: App, what: string): Promise<true> {
    return waitFor(() => app.ready, {
      timeoutMs: WAIT_MS,
      message: () => `${what}: ready (status ${JSON.stringify(app.status())})`,
    });
  }

  async function jobCount(mid: string): Promise<number> {
    const { rows } = await ready().env.db.pool.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM pgqueuer WHERE headers->>'mid' = $1",
      [mid],
    );
    return rows[0]?.n ?? 0;
  }

  async function publishJob(entrypoint: string, mid: string): Promise<void> {
    const { env } = ready();
    await env.broker.publish(env.queue, [
      {
        body: JSON.stringify({ entrypoint, headers: { mid } }),
        options: { messageId: mid, persistent: true },
      },
    ]);
  }

  async function untilJob(mid: string): Promise<void> {
    await waitFor(async () => (await jobCount(mid)) === 1, { timeoutMs: WAIT_MS, message: `job ${mid}` });
    await ready().env.waitForQueueEmpty(WAIT_MS);
  }

  async function assertNoDeadLetters(): Promise<void> {
    const { env, node } = ready();
    const counts = await queueCounts(env.deadLetterQueue, { node: node.nodeName });
    assert.equal(counts.ready + counts.unacked, 0, 'nothing was dead-lettered');
  }

  /** The connections on the AMQPS port, as RabbitMQ sees them. */
  async function tlsConnections(): Promise<Array<{ protocol: string; peer: string }>> {
    const { node } = ready();
    const stdout = await node.rabbitmqctl([
      'list_connections',
      '-q',
      '--no-table-headers',
      'port',
      'ssl',
      'ssl_protocol',
      'peer_cert_subject',
    ]);
    return stdout
      .split('\n')
      .map((line) => line.split('\t'))
      .filter(([port, ssl]) => Number(port) === node.tlsPort && ssl === 'true')
      .map(([, , protocol, peer]) => ({ protocol: protocol ?? '', peer: peer ?? '' }));
  }

  /**
   * A bridge that cannot complete the TLS handshake: it keeps retrying with the TLS error logged,
   * reports not ready (in-process and on /readyz), holds no consumer, and still stops cleanly.
   */
  async function assertKeepsRetrying(
    bridge: Bridge,
    expectedCode: RegExp,
    mustSeeCode?: string,
  ): Promise<void> {
    const { app, logs } = bridge;
    // The first failure is a warning, the same one again only debug: one line per change.
    const failures = (): Array<Record<string, unknown>> =>
      logs.records.filter(
        (r) =>
          r.msg === 'cannot connect to the broker; retrying with backoff' ||
          r.msg === 'still cannot connect to the broker; retrying',
      );
    await waitFor(() => failures().length >= 4, {
      timeoutMs: WAIT_MS,
      message: () => `four failed connection attempts (saw ${failures().length})`,
    });
    const codes = failures().map((r) => String(r.errno));
    for (const code of codes) assert.match(code, expectedCode, `logged: ${JSON.stringify(failures())}`);
    if (mustSeeCode !== undefined) assert.ok(codes.includes(mustSeeCode));
    assert.equal(app.ready, false);
    assert.equal(app.status().consuming, false);
    assert.equal(await readyz(app), 503);
    const { env, node } = ready();
    assert.equal((await queueCounts(env.queue, { node: node.nodeName })).consumers, 0);
    assert.deepEqual(await tlsConnections(), []);
    await within(stopBridge(bridge), WAIT_MS, 'the retrying bridge to stop');
  }

  describe('amqps:// to a broker that requires a client certificate', () => {
    it('connects with amqp.tls caFile, certFile and keyFile (mutual TLS), and a message becomes a job', async () => {
      const { pki, env } = ready();
      const { app } = await launch(
        {
          url: tlsUrl(),
          tls: { caFile: pki.caFile, certFile: pki.clientCertFile, keyFile: pki.clientKeyFile },
        },
        { url: env.server.url },
      );
      await untilReady(app, 'bridge over amqps');
      assert.equal(await readyz(app), 200);
      const connections = await tlsConnections();
      assert.ok(connections.length >= 1, 'the bridge is connected on the TLS port');
      for (const connection of connections) {
        assert.equal(connection.peer, 'CN=pgq-bridge-test-client');
        assert.match(connection.protocol, /^tlsv1\.[23]$/);
      }
      const mid = uniqueName('amqps');
      await publishJob('tls_amqps', mid);
      await untilJob(mid);
      await assertNoDeadLetters();
    });

    it('connects with a passphrase-protected client key (amqp.tls.passphrase)', async () => {
      const { pki, env } = ready();
      const { app } = await launch(
        {
          url: tlsUrl(),
          tls: {
            caFile: pki.caFile,
            certFile: pki.clientCertFile,
            keyFile: pki.encryptedClientKeyFile,
            passphrase: pki.clientKeyPassphrase,
          },
        },
        { url: env.server.url },
      );
      await untilReady(app, 'bridge with an encrypted client key');
      const mid = uniqueName('amqps-passphrase');
      await publishJob('tls_amqps_passphrase', mid);
      await untilJob(mid);
    });

    it('without amqp.tls.caFile it cannot verify the broker: not ready, retrying, still up', async () => {
      const { pki, env } = ready();
      const bridge = await launch(
        { url: tlsUrl(), tls: { certFile: pki.clientCertFile, keyFile: pki.clientKeyFile } },
        { url: env.server.url },
      );
      // The broker sends its CA along with its certificate, hence "self-signed in chain".
      await assertKeepsRetrying(bridge, /^SELF_SIGNED_CERT_IN_CHAIN$/);
    });

    it('with a CA that did not sign the broker certificate: not ready, retrying, still up', async () => {
      const { pki, env } = ready();
      const bridge = await launch(
        {
          url: tlsUrl(),
          tls: { caFile: pki.otherCaFile, certFile: pki.clientCertFile, keyFile: pki.clientKeyFile },
        },
        { url: env.server.url },
      );
      await assertKeepsRetrying(bridge, /^SELF_SIGNED_CERT_IN_CHAIN$/);
    });

    it('without a client certificate the broker refuses the handshake: not ready, retrying, still up', async () => {
      const { pki, env } = ready();
      const bridge = await launch({ url: tlsUrl(), tls: { caFile: pki.caFile } }, { url: env.server.url });
      // In TLS 1.3 the broker's alert comes after the client has finished its side of the
      // handshake, so a reset may occasionally win the race against reading the alert.
      await assertKeepsRetrying(
        bridge,
        /^(ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED|ECONNRESET|EPIPE)$/,
        'ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED',
      );
    });
  });

  describe('https:// PostgREST with a private CA', () => {
    function httpsUrl(): string {
      return `https://localhost:${ready().terminator.port}`;
    }

    it('with postgrest.caFile the call goes over TLS and a message becomes a job', async () => {
      const { pki, node, terminator } = ready();
      const handshakesBefore = terminator.handshakes;
      const { app } = await launch({ url: node.url }, { url: httpsUrl(), caFile: pki.caFile });
      await untilReady(app, 'bridge with an https endpoint');
      const mid = uniqueName('https');
      await publishJob('tls_https', mid);
      await untilJob(mid);
      assert.ok(terminator.handshakes > handshakesBefore, 'the call went through the TLS terminator');
      await assertNoDeadLetters();
    });

    it('without postgrest.caFile the certificate error is an endpoint fault: the message is held, never dead-lettered, and goes through once the CA is configured', async () => {
      const { pki, node, env, terminator } = ready();
      const failuresBefore = terminator.handshakeFailures;
      const untrusting = await launch({ url: node.url }, { url: httpsUrl() });
      const { app, logs } = untrusting;
      // The endpoint check cannot pass an untrusted certificate: consuming, but never ready.
      await waitFor(() => app.status().consuming === true, { timeoutMs: WAIT_MS, message: 'consuming' });
      await waitFor(() => /UNABLE_TO_VERIFY_LEAF_SIGNATURE/.test(String(app.status().reason)), {
        timeoutMs: WAIT_MS,
        message: () => `the reason to name the certificate error (status ${JSON.stringify(app.status())})`,
      });
      assert.equal(app.ready, false);

      const mid = uniqueName('https-held');
      await publishJob('tls_https_held', mid);
      await waitFor(() => app.status().endpointFailing === true, {
        timeoutMs: WAIT_MS,
        message: () => `the endpoint to be reported failing (status ${JSON.stringify(app.status())})`,
      });
      const failure = logs.find((r) => r.messageId === mid && r.outcome === 'endpoint_fault');
      assert.ok(failure, 'the failed call was logged as an endpoint fault');
      // The terminator sends only its own certificate, not the CA's.
      assert.equal(failure.errno, 'UNABLE_TO_VERIFY_LEAF_SIGNATURE');
      // The terminator hears of the aborted handshake when the bridge's alert reaches it, which
      // can be after the bridge has logged the failure.
      await waitFor(() => terminator.handshakeFailures > failuresBefore, {
        timeoutMs: WAIT_MS,
        message: 'the terminator to see the bridge break off the TLS handshake',
      });

      // Several probes (retry.maxDelayMs is 1 s) fail the same way; the message stays held.
      const retriesAtOpen = await metricValue(app, 'pgq_bridge_retries_total', { kind: 'endpoint_fault' });
      await waitFor(
        async () =>
          (await metricValue(app, 'pgq_bridge_retries_total', { kind: 'endpoint_fault' })) >=
          retriesAtOpen + 2,
        { timeoutMs: WAIT_MS, message: 'two more failed probes' },
      );
      assert.equal(app.ready, false);
      assert.equal(app.status().endpointFailing, true);
      assert.equal(await readyz(app), 503);
      const held = await queueCounts(env.queue, { node: node.nodeName });
      assert.deepEqual({ ready: held.ready, unacked: held.unacked }, { ready: 0, unacked: 1 });
      assert.equal(await jobCount(mid), 0);
      await assertNoDeadLetters();

      // Stopping hands the held message back to the queue rather than dropping it.
      await stopBridge(untrusting);
      await waitFor(
        async () => {
          const counts = await queueCounts(env.queue, { node: node.nodeName });
          return counts.ready === 1 && counts.unacked === 0;
        },
        { timeoutMs: WAIT_MS, message: 'the held message back in the queue' },
      );

      const trusting = await launch({ url: node.url }, { url: httpsUrl(), caFile: pki.caFile });
      await untilReady(trusting.app, 'bridge with the CA');
      await untilJob(mid);
      await assertNoDeadLetters();
    });
  });
});
