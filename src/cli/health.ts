import http from 'node:http';
import { loadConfig } from '../config/config.ts';
import { ConfigError, errorCode, toError } from '../errors.ts';
import { defineCommand, EXIT } from './command.ts';
import { configOption } from './config-option.ts';

/** Within the image's HEALTHCHECK timeout (3 s), so a hung bridge gets a verdict, not a kill. */
const TIMEOUT_MS = 2_000;

export const healthCommand = defineCommand({
  name: 'health',
  summary: "ask a running bridge's /healthz (or /readyz) on the configured port",
  details: [
    'Reads the same config as run (http.host, http.port, PGQ_BRIDGE_HTTP_PORT), so a container',
    'health check follows the configured port. Prints the status and the answer on one line.',
  ],
  options: {
    config: configOption,
    ready: {
      type: 'boolean',
      description: 'ask /readyz (consuming, endpoint answering) instead of /healthz',
    },
  },
  readsConfig: true,
  exitCodes: {
    [EXIT.ok]: 'the bridge answered 200',
    [EXIT.failure]: `any other answer, or none within ${TIMEOUT_MS / 1000} s`,
  },
  async run(values) {
    const { http: settings } = loadConfig(values.config);
    if (!settings.enabled) throw new ConfigError(['http.enabled: false, so there is no endpoint to ask']);
    const path = values.ready === true ? '/readyz' : '/healthz';
    const host = localAddress(settings.host);
    const where = `${host.includes(':') ? `[${host}]` : host}:${settings.port}${path}`;
    try {
      const { status, body } = await get(host, settings.port, path);
      process.stdout.write(`${status} ${where} ${body}\n`);
      return status === 200 ? EXIT.ok : EXIT.failure;
    } catch (error) {
      process.stdout.write(`no answer from ${where}: ${errorCode(error) ?? toError(error).message}\n`);
      return EXIT.failure;
    }
  },
});

/** A wildcard listen address is reached on loopback from inside the same host or pod. */
function localAddress(listenHost: string): string {
  if (listenHost === '' || listenHost === '0.0.0.0') return '127.0.0.1';
  if (listenHost === '::') return '::1';
  return listenHost;
}

function get(host: string, port: number, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const request = http.get({ host, port, path, timeout: TIMEOUT_MS }, (response) => {
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => {
        body += chunk;
      });
      response.on('end', () => resolve({ status: response.statusCode ?? 0, body: body.trim() }));
      response.on('error', reject);
    });
    request.on('timeout', () =>
      request.destroy(Object.assign(new Error('timed out'), { code: 'ETIMEDOUT' })),
    );
    request.on('error', reject);
  });
}
