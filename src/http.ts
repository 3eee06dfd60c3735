import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { ConfigError, errorCode, toError } from './errors.ts';

/**
 * /healthz: the process is alive (the event loop answers).
 * /readyz:  consuming from the broker and the RPC endpoint not failing; 503 otherwise.
 * /status:  the same report as /readyz (which nodes the connections use, why not ready), always 200.
 * /metrics: Prometheus text, always served, ready or not (it is how an operator sees why not).
 */

export interface HealthSource {
  readonly ready: boolean;
  status(): Record<string, unknown>;
}

export interface HttpEndpoint {
  readonly port: number;
  close(): Promise<void>;
}

export async function startHttp(
  host: string,
  port: number,
  health: HealthSource,
  registry: Registry,
  logger: Logger,
): Promise<HttpEndpoint> {
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    if (path === '/healthz') {
      json(res, 200, { status: 'ok' });
    } else if (path === '/readyz') {
      json(res, health.ready ? 200 : 503, { ready: health.ready, ...health.status() });
    } else if (path === '/status') {
      json(res, 200, { ready: health.ready, ...health.status() });
    } else if (path === '/metrics') {
      registry.metrics().then(
        (text) => res.writeHead(200, { 'content-type': registry.contentType }).end(text),
        (error: unknown) => {
          logger.error({ err: toError(error) }, 'collecting metrics failed');
          res.writeHead(500).end();
        },
      );
    } else {
      json(res, 404, { error: 'not found', endpoints: ['/healthz', '/readyz', '/status', '/metrics'] });
    }
  });
  // A socket error on one request must not take the process down.
  server.on('clientError', (_error, socket) => socket.destroy());
  await new Promise<void>((resolve, reject) => {
    const refused = (error: Error): void => reject(listenProblem(error, host, port));
    server.once('error', refused);
    server.listen(port, host, () => {
      server.off('error', refused);
      resolve();
    });
  });
  server.on('error', (error) => logger.error({ err: error }, 'health endpoint error'));
  const actualPort = (server.address() as AddressInfo).port;
  logger.info({ host, port: actualPort }, 'health and metrics endpoint listening');
  return {
    port: actualPort,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** A port or address the bridge cannot listen on is the operator's setting to change, not weather. */
function listenProblem(error: Error, host: string, port: number): Error {
  const where = `${host.includes(':') ? `[${host}]` : host}:${port}`;
  switch (errorCode(error)) {
    case 'EADDRINUSE':
      return new ConfigError([
        `http.port: ${where} is already in use; choose a free port (http.port or PGQ_BRIDGE_HTTP_PORT)`,
      ]);
    case 'EACCES':
      return new ConfigError([
        `http.port: not permitted to listen on ${where}; choose a port above 1023 (http.port or PGQ_BRIDGE_HTTP_PORT)`,
      ]);
    case 'EADDRNOTAVAIL':
      return new ConfigError([`http.host: ${host} is not an address of this host`]);
    default:
      return error;
  }
}

function json(res: http.ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
}
