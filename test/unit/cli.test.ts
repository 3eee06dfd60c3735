import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { closest, parseOptions } from '../../src/cli/args.ts';
import { UsageError } from '../../src/cli/command.ts';
import { COMMANDS } from '../../src/cli/commands.ts';
import { configOption } from '../../src/cli/config-option.ts';
import { commandHelp, overviewHelp } from '../../src/cli/help.ts';
import { psqlSet, scriptVariables, sqlCommand } from '../../src/cli/sql.ts';
import { parseConfig } from '../../src/config/config.ts';
import { ENV_OVERRIDES } from '../../src/config/env.ts';
import { poolWarnings, totalConcurrency } from '../../src/config/sizing.ts';

const OPTIONS = {
  config: configOption,
  ready: { type: 'boolean', description: 'r' },
  'api-role': { type: 'string', value: 'NAME', description: 'a' },
} as const;

const usageMessage = (args: readonly string[]): string => {
  try {
    parseOptions(args, OPTIONS, 'x');
  } catch (error) {
    if (error instanceof UsageError) return error.message;
    throw error;
  }
  return '(parsed)';
};

describe('parseOptions', () => {
  for (const args of [['--config', 'a.json'], ['-c', 'a.json'], ['--config=a.json']]) {
    it(`${args.join(' ')} gives the config path`, () => {
      assert.deepEqual({ ...parseOptions(args, OPTIONS, 'x') }, { config: 'a.json' });
    });
  }

  it('gives only what was passed', () => {
    assert.deepEqual(
      { ...parseOptions(['--ready', '--api-role', "o'k"], OPTIONS, 'x') },
      {
        ready: true,
        'api-role': "o'k",
      },
    );
    assert.deepEqual({ ...parseOptions([], OPTIONS, 'x') }, {});
  });

  const refused: ReadonlyArray<readonly [readonly string[], string]> = [
    [['--confg', 'a.json'], 'unknown option --confg (did you mean --config?)'],
    [['--api-rol', 'x'], 'unknown option --api-rol (did you mean --api-role?)'],
    [['--verbose'], 'unknown option --verbose'],
    [['-x'], 'unknown option -x'],
    [['stray'], 'unexpected argument "stray"'],
    [['--ready', 'yes'], 'unexpected argument "yes"'],
    [['--ready=yes'], '--ready takes no value'],
    [['--config'], '--config needs a value'],
    [
      ['--config', '--ready'],
      '--config needs a value, got --ready (write --config=--ready if that is the value)',
    ],
  ];
  for (const [args, message] of refused) {
    it(`refuses ${args.join(' ')}: ${message}`, () => {
      assert.equal(usageMessage(args), message);
    });
  }

  it('names the command whose help explains the fix', () => {
    assert.throws(
      () => parseOptions(['--nope'], {}, 'sql'),
      (e: unknown) => e instanceof UsageError && e.command === 'sql',
    );
  });
});

describe('closest', () => {
  it('suggests the single name within two edits', () => {
    assert.equal(closest('confg', ['config', 'ready']), 'config');
    assert.equal(closest('redy', ['config', 'ready']), 'ready');
    assert.equal(closest('something', ['config', 'ready']), undefined);
  });

  it('suggests nothing when two names are equally near', () => {
    assert.equal(closest('ab', ['abc', 'abd']), undefined);
  });
});

describe('psqlSet', () => {
  it('keeps every value on one line, quotes and backslashes escaped', () => {
    assert.equal(psqlSet('api_role', "it's"), "\\set api_role 'it\\'s'");
    assert.equal(psqlSet('api_role', 'a\\b'), "\\set api_role 'a\\\\b'");
    assert.equal(psqlSet('api_role', 'a\nb\r\tc\u007f'), "\\set api_role 'a\\012b\\015\\011c\\177'");
    assert.equal(psqlSet('api_role', 'ünï 名'), "\\set api_role 'ünï 名'");
    for (let code = 0; code < 128; code++) {
      const line = psqlSet('v', `x${String.fromCharCode(code)}x`);
      const control = [...line].filter((c) => c.charCodeAt(0) < 0x20 || c.charCodeAt(0) === 0x7f);
      assert.deepEqual(control, [], `code ${code}`);
      // Inside the quotes, every quote is escaped: the value cannot close them early.
      assert.doesNotMatch(line.slice("\\set v '".length, -1), /(^|[^\\])(\\\\)*'/, `code ${code}`);
    }
  });
});

describe('sql options', () => {
  const sqlDir = new URL('../../sql/', import.meta.url);
  const scripts = readdirSync(sqlDir).filter((f) => f.endsWith('.sql'));
  const read = new Set(
    scripts.flatMap((f) => [...scriptVariables(readFileSync(new URL(f, sqlDir), 'utf8'))]),
  );
  const variableOptions = Object.keys(sqlCommand.options)
    .filter((o) => sqlCommand.options[o]?.type === 'string')
    .map((o) => o.replaceAll('-', '_'));

  it('offers an option for every psql variable a script reads, and no other', () => {
    assert.ok(read.has('api_role') && read.has('owner_role'), [...read].join(','));
    assert.deepEqual(variableOptions.sort(), [...read].sort());
  });
});

describe('help', () => {
  const overview = overviewHelp(COMMANDS, '9.9.9');

  it('lists every command, every environment variable and every exit code', () => {
    assert.match(overview, /^pgq-bridge 9\.9\.9: /);
    for (const command of COMMANDS) assert.match(overview, new RegExp(`^  ${command.name} +\\S`, 'm'));
    for (const name of ['PGQ_BRIDGE_CONFIG', ...Object.keys(ENV_OVERRIDES)]) {
      assert.match(overview, new RegExp(`^  ${name} +\\S`, 'm'), name);
    }
    for (const code of [0, 1, 2, 78]) assert.match(overview, new RegExp(`^  ${code} +\\S`, 'm'));
  });

  for (const command of COMMANDS) {
    it(`${command.name} --help lists its options and exit codes`, () => {
      const text = commandHelp(command);
      for (const [name, spec] of Object.entries(command.options)) {
        const flag = spec.type === 'string' ? `--${name} ${spec.value}` : `--${name}`;
        assert.ok(text.includes(`${flag}  `), `${command.name}: ${flag}`);
      }
      assert.match(text, /^ {2}-h, --help +show this help$/m);
      assert.match(text, /^ {2}2 +usage error/m);
      assert.equal(/^ {2}78 +/m.test(text), command.readsConfig);
      assert.equal(text.includes('PGQ_BRIDGE_HTTP_PORT'), command.readsConfig);
    });
  }
});

describe('README command line section', () => {
  const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');

  it('names every command and every exit code', () => {
    for (const command of COMMANDS) {
      assert.match(readme, new RegExp(`^pgq-bridge \\[?${command.name}\\]? `, 'm'), command.name);
    }
    for (const code of [0, 1, 2, 78]) assert.match(readme, new RegExp(`^\\| ${code} \\|`, 'm'));
  });
});

describe('poolWarnings', () => {
  const config = (dbPool: number | undefined, concurrencies: readonly number[]) =>
    parseConfig({
      amqp: { url: 'amqp://h' },
      postgrest: { url: 'http://p', ...(dbPool === undefined ? {} : { dbPool }) },
      sources: concurrencies.map((concurrency, i) => ({ queue: `q${i}`, concurrency })),
    });

  it('warns only when the sum exceeds a known pool', () => {
    assert.deepEqual(poolWarnings(config(undefined, [500, 500])), []);
    assert.deepEqual(poolWarnings(config(10, [5, 5])), []);
    const [warning, ...more] = poolWarnings(config(10, [5, 6]));
    assert.deepEqual(more, []);
    assert.match(
      warning ?? '',
      /^sources: total concurrency 11 \(q0: 5, q1: 6\) exceeds postgrest\.dbPool 10;/,
    );
  });

  it("config.example.json follows the README's sizing rule: the sources share PostgREST's pool", () => {
    const example = parseConfig(
      JSON.parse(readFileSync(new URL('../../config.example.json', import.meta.url), 'utf8')),
    );
    assert.equal(example.postgrest.dbPool, 10);
    assert.ok(totalConcurrency(example) <= 10, `total ${totalConcurrency(example)}`);
    assert.deepEqual(poolWarnings(example), []);
  });
});
