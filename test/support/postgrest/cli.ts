// Runs the PostgREST-compatible server on its own, e.g. for a manual test or a benchmark:
//
//   node --import tsx test/support/postgrest/cli.ts --db-uri postgres://authenticator@127.0.0.1/db \
//     --port 3000 --anon-role pgqapi --jwt-secret "$SECRET" --schemas public
//
// Prints the URL once the port is open; SIGINT or SIGTERM closes it.

import { parseArgs } from 'node:util';
import type { Flavor } from './errors.ts';
import { createPostgrestServer, type PostgrestServerOptions, type TxEnd } from './server.ts';

const { values } = parseArgs({
  options: {
    'db-uri': { type: 'string' },
    host: { type: 'string', default: '127.0.0.1' },
    port: { type: 'string', default: '3000' },
    'anon-role': { type: 'string' },
    'jwt-secret': { type: 'string' },
    schemas: { type: 'string', default: 'public' },
    'tx-end': { type: 'string', default: 'commit' },
    pool: { type: 'string', default: '10' },
    'pool-acquisition-timeout-ms': { type: 'string', default: '10000' },
    'delay-ms': { type: 'string', default: '0' },
    flavor: { type: 'string', default: '10.1.2' },
  },
  strict: true,
});

const TX_ENDS: readonly TxEnd[] = ['commit', 'commit-allow-override', 'rollback', 'rollback-allow-override'];
const FLAVORS: readonly Flavor[] = ['10.1.2', 'v14'];

function fail(message: string): never {
  process.stderr.write(`${message}\n`);
  process.exit(2);
}

function integer(name: string, text: string | undefined): number {
  const value = Number(text);
  if (!Number.isInteger(value) || value < 0) fail(`--${name} must be a non-negative integer, got ${text}`);
  return value;
}

const dbUri = values['db-uri'] ?? fail('--db-uri is required');
const txEnd =
  TX_ENDS.find((end) => end === values['tx-end']) ?? fail(`--tx-end must be one of ${TX_ENDS.join(', ')}`);
const flavor =
  FLAVORS.find((name) => name === values.flavor) ?? fail(`--flavor must be one of ${FLAVORS.join(', ')}`);

const options: PostgrestServerOptions = {
  dbUri,
  host: values.host ?? '127.0.0.1',
  port: integer('port', values.port),
  schemas: (values.schemas ?? 'public').split(',').map((schema) => schema.trim()),
  txEnd,
  poolSize: integer('pool', values.pool),
  poolAcquisitionTimeoutMs: integer('pool-acquisition-timeout-ms', values['pool-acquisition-timeout-ms']),
  delayMs: integer('delay-ms', values['delay-ms']),
  flavor,
  ...(values['anon-role'] === undefined ? {} : { anonRole: values['anon-role'] }),
  ...(values['jwt-secret'] === undefined ? {} : { jwtSecret: values['jwt-secret'] }),
};

const server = createPostgrestServer(options);
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    server.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  });
}
process.stderr.write('connecting to the database…\n');
server.ready.then(
  () => process.stdout.write(`${server.url}\n`),
  (error: unknown) => fail(`not started: ${String(error)}`),
);
