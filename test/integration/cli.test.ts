import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { connectionString, createScratchDatabase, ensureRoles, type ScratchDatabase } from '../support/pg.ts';

/** The command line as an operator uses it: dist/main.js, its output and its exit codes. */
const MAIN = fileURLToPath(new URL('../../dist/main.js', import.meta.url));
const EXAMPLE = fileURLToPath(new URL('../../config.example.json', import.meta.url));

function cli(args: readonly string[], env: Record<string, string> = {}) {
  return spawnSync(process.execPath, [MAIN, ...args], {
    encoding: 'utf8',
    env: { PATH: process.env.PATH ?? '', ...env },
  });
}

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
