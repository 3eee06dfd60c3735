import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { connectionString, createScratchDatabase, ensureRoles, type ScratchDatabase } from '../support/pg.ts';

/**
 * `pgq-bridge sql` piped into the real psql, as an operator installs the function: the names
 * given on the command line reach the database exactly, whatever characters they hold.
 */
const MAIN = fileURLToPath(new URL('../../dist/main.js', import.meta.url));
const SINGLE = '(text,bytea,integer,interval,text,jsonb)';

function cli(args: readonly string[]) {
  return spawnSync(process.execPath, [MAIN, 'sql', ...args], {
    encoding: 'utf8',
    env: { PATH: process.env.PATH ?? '' },
  });
}

function psql(database: string, input: string) {
  return spawnSync('psql', ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', connectionString(database)], {
    input,
    encoding: 'utf8',
  });
}

/** Installs what `pgq-bridge sql ARGS` prints; fails the test when either step fails. */
function install(db: ScratchDatabase, args: readonly string[]): void {
  const sql = cli(args);
  assert.equal(sql.status, 0, sql.stderr);
  const run = psql(db.name, sql.stdout);
  assert.equal(run.status, 0, run.stderr);
}

describe('pgq-bridge sql | psql', () => {
  let db: ScratchDatabase;
  const suffix = randomBytes(3).toString('hex');
  // A quote, a newline, a backslash and a psql escape sequence, all in one role name.
  const oddRole = `pgqb_cli '"\n\\n\\x41 ${suffix}`;

  before(async () => {
    db = await createScratchDatabase('pgqb_cli_sql', { install: false });
    await ensureRoles([{ name: oddRole }, { name: 'pgqb_cli_api' }]);
  });

  after(async () => {
    await db?.drop();
  });

  const canExecute = async (role: string, fn: string): Promise<boolean | undefined> => {
    const { rows } = await db.pool.query<{ ok: boolean | null }>(
      `SELECT CASE WHEN to_regprocedure($2) IS NULL THEN NULL
                   ELSE has_function_privilege($1, $2, 'EXECUTE') END AS ok`,
      [role, fn],
    );
    return rows[0]?.ok ?? undefined;
  };

  it('grants to exactly the role named, quotes, newlines and backslashes included', async () => {
    install(db, ['--api-role', oddRole, '--function-name', 'odd_enqueue']);
    assert.equal(await canExecute(oddRole, `public.odd_enqueue${SINGLE}`), true);
  });

  it('a name that tries to end the psql line runs no SQL of its own; the script refuses it', async () => {
    const attack = `nobody'\nDROP TABLE public.pgqueuer_log; --\n\\set x '`;
    const sql = cli(['--api-role', attack]);
    assert.equal(sql.status, 0, sql.stderr);
    const run = psql(db.name, sql.stdout);
    assert.notEqual(run.status, 0);
    assert.match(run.stderr, /role "nobody'\nDROP TABLE public\.pgqueuer_log; --\n\\set x '" does not exist/);
    const { rows } = await db.pool.query<{ t: string | null }>(
      "SELECT to_regclass('public.pgqueuer_log')::text AS t",
    );
    assert.equal(rows[0]?.t, 'pgqueuer_log');
  });

  it('--batch installs the bulk function and --batch --uninstall removes it', async () => {
    install(db, ['--batch', '--api-role', 'pgqb_cli_api']);
    assert.equal(await canExecute('pgqb_cli_api', 'public.fn_pgqueuer_enqueue_batch(jsonb)'), true);
    install(db, ['--batch', '--uninstall']);
    assert.equal(await canExecute('pgqb_cli_api', 'public.fn_pgqueuer_enqueue_batch(jsonb)'), undefined);
  });

  it('--hardened installs the definer function and --uninstall --hardened removes it', async () => {
    install(db, ['--hardened', '--api-role', 'pgqb_cli_api', '--allowed-entrypoints', 'fetch,report_*']);
    const { rows } = await db.pool.query<{ definer: boolean }>(
      `SELECT prosecdef AS definer FROM pg_proc WHERE oid = to_regprocedure('public.fn_pgqueuer_enqueue${SINGLE}')`,
    );
    assert.deepEqual(rows, [{ definer: true }]);
    install(db, ['--uninstall', '--hardened']);
    assert.equal(await canExecute('pgqb_cli_api', `public.fn_pgqueuer_enqueue${SINGLE}`), undefined);
  });

  it('--ledger installs the _once functions beside the plain ones and --ledger --uninstall removes them', async () => {
    install(db, ['--api-role', 'pgqb_cli_api']);
    install(db, ['--batch', '--api-role', 'pgqb_cli_api']);
    install(db, ['--ledger', '--api-role', 'pgqb_cli_api', '--retention', '3 days']);
    const { rows } = await db.pool.query<{ args: string }>(
      "SELECT pg_get_function_identity_arguments(oid) AS args FROM pg_proc WHERE proname = 'fn_pgqueuer_enqueue_once'",
    );
    assert.equal(rows.length, 1, 'the single _once function exists');
    assert.equal(await canExecute('pgqb_cli_api', 'public.fn_pgqueuer_enqueue_batch_once(jsonb)'), true);
    install(db, ['--ledger', '--uninstall']);
    assert.equal(await canExecute('pgqb_cli_api', 'public.fn_pgqueuer_enqueue_batch_once(jsonb)'), undefined);
  });

  it('every value comes back from psql byte for byte', () => {
    // Each character class psql's backslash-command lexer treats specially, plus plain text.
    const values = [
      '',
      "'",
      "''",
      '\\',
      '\\\\',
      "\\'",
      ':"x"',
      ":'x'",
      ':x',
      '`echo hi`',
      'a b\tc',
      '\r\n',
      'ünïcødé 名前',
      '\\012\\x41\\b',
      ...Array.from({ length: 32 }, (_, code) => `c${String.fromCharCode(code === 0 ? 127 : code)}c`),
    ];
    const sets = values.map((value, i) => {
      const printed = cli(['--uninstall', '--function-name', value]);
      assert.equal(printed.status, 0, printed.stderr);
      return printed.stdout.split('\\set ON_ERROR_STOP')[0]?.replaceAll('function_name', `v${i}`) ?? '';
    });
    const echo = values.map((_, i) => `SELECT encode(convert_to(:'v${i}', 'UTF8'), 'hex');`);
    const run = spawnSync('psql', ['-X', '-At', '-v', 'ON_ERROR_STOP=1', '-d', connectionString(db.name)], {
      input: `${sets.join('')}${echo.join('\n')}\n`,
      encoding: 'utf8',
    });
    assert.equal(run.status, 0, run.stderr);
    const got = run.stdout
      .trimEnd()
      .split('\n')
      .map((hex) => Buffer.from(hex, 'hex').toString('utf8'));
    assert.deepEqual(got, values);
  });
});
