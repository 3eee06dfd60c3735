import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { BridgeProcess } from '../support/bridge-process.ts';
import { connectionString, createScratchDatabase, ensureRoles, type ScratchDatabase } from '../support/pg.ts';
import { amqpUrl, deleteQueues, uniqueName } from '../support/rabbit.ts';

/** The command line as an operator uses it: dist/main.js, its output and its exit codes. */
const MAIN = fileURLToPath(new URL('../../dist/main.js', import.meta.url));
const EXAMPLE = fileURLToPath(new URL('../../config.example.json', import.meta.url));

function cli(args: readonly string[], env: Record<string, string> = {}) {
  return spawnSync(process.execPath, [MAIN, ...args], {
    encoding: 'utf8',
    env: { PATH: process.env.PATH ?? '', ...env },
  });
}

/** As cli(), without blocking the event loop (for commands that talk to this process). */
function cliAsync(
  args: readonly string[],
): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [MAIN, ...args], { env: { PATH: process.env.PATH ?? '' } });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      stdout += chunk;
    });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      stderr += chunk;
    });
    child.on('close', (status) => resolve({ status, stdout, stderr }));
  });
}

/** An HTTP server on a free loopback port answering `status` on every path. */
async function answering(status: (path: string) => number): Promise<http.Server & { port: number }> {
  const server = http.createServer((req, res) =>
    res.writeHead(status(req.url ?? '/')).end('{"ready":false}'),
  );
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return Object.assign(server, { port: (server.address() as AddressInfo).port });
}

const closeServer = (server: http.Server): Promise<void> =>
  new Promise((resolve) => server.close(() => resolve()));

describe('pgq-bridge command line', () => {
  let db: ScratchDatabase;
  const dir = mkdtempSync(join(tmpdir(), 'pgq-bridge-cli-'));

  before(async () => {
    db = await createScratchDatabase('pgqb_cli', { install: false });
    await ensureRoles([{ name: 'pgqb_cli_api' }]);
  });

  after(async () => {
    await db?.drop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('check-config prints the resolved config with secrets masked and exits 0', () => {
    const result = cli(['check-config', '--config', EXAMPLE], {
      PGQ_BRIDGE_POSTGREST_TOKEN: 'top-secret-token',
    });
    assert.equal(result.status, 0, result.stderr);
    const printed = JSON.parse(result.stdout) as {
      amqp: { url: string };
      postgrest: { bearerToken: string };
    };
    assert.equal(printed.amqp.url, 'amqp://guest:***@127.0.0.1:5672');
    assert.equal(printed.postgrest.bearerToken, '***');
    assert.doesNotMatch(result.stdout, /top-secret-token/);
  });

  it('refuses a bad config with exit code 78 and one line per problem naming the key', () => {
    const file = join(dir, 'bad.json');
    writeFileSync(
      file,
      JSON.stringify({ amqp: { url: 'http://x' }, postgrest: { url: 'http://p' }, sources: [], typo: 1 }),
    );
    const result = cli(['run', '--config', file], { PGQ_BRIDGE_HTTP_PORT: 'eighty' });
    assert.equal(result.status, 78);
    const lines = result.stderr.split('\n').filter((l) => l.startsWith('  - '));
    assert.deepEqual(lines.sort(), [
      '  - amqp.url: must be an amqp:// or amqps:// URL',
      '  - http.port (from PGQ_BRIDGE_HTTP_PORT): Invalid input: expected number, received string',
      '  - sources: Too small: expected array to have >=1 items',
      '  - typo: unknown key',
    ]);
  });

  it('exits 78 when no config is given and 2 for an unknown command', () => {
    assert.equal(cli(['run']).status, 78);
    assert.equal(cli(['frobnicate']).status, 2);
  });

  it('refuses a mistyped option or a stray argument with exit 2, one line and a pointer to --help', () => {
    const cases = [
      [['--confg', EXAMPLE], /^pgq-bridge: unknown option --confg \(did you mean --config\?\)$/],
      [['check-config', '--config', EXAMPLE, 'extra'], /^pgq-bridge: unexpected argument "extra"$/],
      [['sql', '--api-rol', 'x'], /^pgq-bridge: unknown option --api-rol \(did you mean --api-role\?\)$/],
      [['sql', '--hardened=yes'], /^pgq-bridge: --hardened takes no value$/],
      [['sql', '--owner-role', 'o'], /^pgq-bridge: --owner-role does not apply to sql\/install\.sql$/],
      [['health', '--config'], /^pgq-bridge: --config needs a value$/],
    ] as const;
    for (const [args, message] of cases) {
      const result = cli(args);
      assert.equal(result.status, 2, args.join(' '));
      assert.equal(result.stdout, '', args.join(' '));
      const lines = result.stderr.trimEnd().split('\n');
      assert.equal(lines.length, 2, result.stderr);
      assert.match(lines[0] ?? '', message);
      assert.match(
        lines[1] ?? '',
        new RegExp(`^See 'pgq-bridge ${args[0] === '--confg' ? 'run' : args[0]} --help'\\.$`),
      );
    }
  });

  it('--version prints the package version; --help for the tool and each command exits 0', () => {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
      version: string;
    };
    assert.equal(cli(['--version']).stdout, `${pkg.version}\n`);
    const overview = cli(['--help']);
    assert.equal(overview.status, 0);
    for (const command of ['run', 'check-config', 'sql', 'health']) {
      assert.match(overview.stdout, new RegExp(`^  ${command} `, 'm'));
      const help = cli([command, '--help']);
      assert.equal(help.status, 0, command);
      assert.match(help.stdout, new RegExp(`^Usage: pgq-bridge ${command} `));
      assert.equal(cli(['help', command]).stdout, help.stdout);
    }
  });

  it("check-config warns on stderr when the sources' total concurrency exceeds postgrest.dbPool", () => {
    const file = join(dir, 'pool.json');
    writeFileSync(
      file,
      JSON.stringify({
        amqp: { url: 'amqp://127.0.0.1' },
        postgrest: { url: 'http://p', dbPool: 10 },
        concurrency: 6,
        sources: [{ queue: 'a' }, { queue: 'b', concurrency: 5 }],
      }),
    );
    const result = cli(['check-config', '--config', file]);
    assert.equal(result.status, 0, result.stderr);
    assert.equal(
      result.stderr,
      "pgq-bridge: warning: sources: total concurrency 11 (a: 6, b: 5) exceeds postgrest.dbPool 10; calls beyond the pool wait inside PostgREST and end in 504 PGRST003 — lower concurrency or raise PostgREST's db-pool\n",
    );
    assert.equal(cli(['check-config', '--config', EXAMPLE]).stderr, '');
  });

  it('exits 78 with one line naming http.port and PGQ_BRIDGE_HTTP_PORT when the port is taken', async () => {
    const taken = await answering(() => 200);
    try {
      const file = join(dir, 'taken.json');
      writeFileSync(
        file,
        JSON.stringify({
          amqp: { url: amqpUrl() },
          postgrest: { url: 'http://127.0.0.1:9' },
          sources: [{ queue: uniqueName('pgqb-cli-port') }],
          http: { host: '127.0.0.1', port: taken.port },
          log: { level: 'silent' },
        }),
      );
      const result = await cliAsync(['run', '--config', file]);
      assert.equal(result.status, 78);
      assert.equal(
        result.stderr,
        `pgq-bridge: invalid configuration: http.port: 127.0.0.1:${taken.port} is already in use; choose a free port (http.port or PGQ_BRIDGE_HTTP_PORT)\n`,
      );
    } finally {
      await closeServer(taken);
    }
  });

  it('health asks /healthz or /readyz on the configured port and exits 0 only for a 200', async () => {
    const server = await answering((path) => (path === '/healthz' ? 200 : 503));
    const file = join(dir, 'health.json');
    const write = (http: Record<string, unknown>): void =>
      writeFileSync(
        file,
        JSON.stringify({
          amqp: { url: 'amqp://x' },
          postgrest: { url: 'http://p' },
          sources: [{ queue: 'q' }],
          http,
        }),
      );
    try {
      write({ host: '127.0.0.1', port: server.port });
      const healthy = await cliAsync(['health', '--config', file]);
      assert.equal(healthy.status, 0, healthy.stdout);
      assert.equal(healthy.stdout, `200 127.0.0.1:${server.port}/healthz {"ready":false}\n`);
      const ready = await cliAsync(['health', '--ready', '--config', file]);
      assert.equal(ready.status, 1);
      assert.equal(ready.stdout, `503 127.0.0.1:${server.port}/readyz {"ready":false}\n`);
    } finally {
      await closeServer(server);
    }
    const gone = await cliAsync(['health', '--config', file]);
    assert.equal(gone.status, 1);
    assert.equal(gone.stdout, `no answer from 127.0.0.1:${server.port}/healthz: ECONNREFUSED\n`);
    write({ enabled: false });
    const disabled = await cliAsync(['health', '--config', file]);
    assert.equal(disabled.status, 78);
    assert.match(disabled.stderr, /^pgq-bridge: invalid configuration: http\.enabled: false/);
  });

  it('health reaches a running bridge on a wildcard listen address through loopback', async () => {
    const probe = await answering(() => 200);
    const port = probe.port;
    await closeServer(probe);
    const queue = uniqueName('pgqb-cli-health');
    const config = {
      amqp: { url: amqpUrl() },
      postgrest: { url: 'http://127.0.0.1:9' },
      sources: [{ queue }],
      http: { host: '0.0.0.0', port },
    };
    const bridge = new BridgeProcess(config);
    try {
      await bridge.waitForLog((r) => r.msg === 'health and metrics endpoint listening');
      const file = join(dir, 'bridge.json');
      writeFileSync(file, JSON.stringify(config));
      const result = await cliAsync(['health', '--config', file]);
      assert.equal(result.status, 0, result.stdout);
      assert.equal(result.stdout, `200 127.0.0.1:${port}/healthz {"status":"ok"}\n`);
    } finally {
      await bridge.stop();
      await deleteQueues(queue, `${queue}.dead`);
    }
  });

  it('sql prints the install script with the given names, ready for psql', () => {
    const sql = cli(['sql', '--api-role', 'pgqb_cli_api', '--function-name', 'enqueue_job']);
    assert.equal(sql.status, 0, sql.stderr);
    const psql = spawnSync('psql', ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', connectionString(db.name)], {
      input: sql.stdout,
      encoding: 'utf8',
    });
    assert.equal(psql.status, 0, psql.stderr);
    const check = spawnSync(
      'psql',
      [
        '-X',
        '-At',
        '-d',
        connectionString(db.name),
        '-c',
        "SELECT has_function_privilege('pgqb_cli_api', 'public.enqueue_job(text,bytea,integer,interval,text,jsonb)', 'EXECUTE')",
      ],
      { encoding: 'utf8' },
    );
    assert.equal(check.stdout.trim(), 't');
  });
});
