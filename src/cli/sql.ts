import { readFileSync } from 'node:fs';
import { defineCommand, EXIT, type OptionSpec, UsageError } from './command.ts';

/**
 * The SQL scripts ship with the bridge and take their names as psql variables, so printing
 * `\set` lines ahead of a script is all it takes to install under other names. The scripts
 * themselves say which variables they read (`\if :{?name}`), so a value the chosen script
 * would ignore is refused rather than silently dropped.
 */

interface VariableSpec extends OptionSpec {
  readonly type: 'string';
  /** A PostgreSQL name: longer than 63 bytes it would be truncated, and name another object. */
  readonly identifier: boolean;
}

const name = (description: string): VariableSpec => ({
  type: 'string',
  value: 'NAME',
  description,
  identifier: true,
});

const VARIABLES = {
  'api-schema': name("schema of the function, one of PostgREST's db-schemas [public]"),
  'queue-schema': name('schema of the PGQueuer tables [the api schema]'),
  'queue-table': name("PGQueuer's queue table [pgqueuer]"),
  'log-table': name("PGQueuer's log table [pgqueuer_log]"),
  'function-name': name('the function [fn_pgqueuer_enqueue; with --batch fn_pgqueuer_enqueue_batch]'),
  'batch-function': name(
    '--ledger: the bulk function the _once bulk function wraps [fn_pgqueuer_enqueue_batch]',
  ),
  'ledger-table': name('--ledger: the ledger table, which names fn_<table>_prepare/_prune [pgqueuer_ledger]'),
  'api-role': name('role that may call the function; must exist [pgqapi]'),
  'owner-role': name('--hardened: role the function runs as [owner of the queue table]'),
  'max-payload-bytes': {
    type: 'string',
    value: 'SIZE',
    description: '--hardened: largest payload, bytes or with a unit (512kB, 4MB) [1MB]',
    identifier: false,
  },
  'max-headers-bytes': {
    type: 'string',
    value: 'SIZE',
    description: '--hardened: largest headers object as JSON text [64kB]',
    identifier: false,
  },
  retention: {
    type: 'string',
    value: 'INTERVAL',
    description: '--ledger: how long entries are kept at least, the floor of pruning [7 days]',
    identifier: false,
  },
  'allowed-entrypoints': {
    type: 'string',
    value: 'LIST',
    description: '--hardened: comma-separated entrypoints, * matches any run [empty: any]',
    identifier: false,
  },
} as const satisfies Record<string, VariableSpec>;

const options = {
  batch: { type: 'boolean', description: 'the bulk function that batch mode calls (sql/install-batch.sql)' },
  hardened: {
    type: 'boolean',
    description: 'the SECURITY DEFINER function with in-database limits (sql/install-hardened.sql)',
  },
  ledger: {
    type: 'boolean',
    description: 'the idempotency ledger and its _once functions (sql/install-ledger.sql)',
  },
  uninstall: { type: 'boolean', description: 'the script that removes the function instead' },
  ...VARIABLES,
} as const;

/** PostgreSQL's NAMEDATALEN - 1. */
const MAX_NAME_BYTES = 63;

export const sqlCommand = defineCommand({
  name: 'sql',
  summary: 'print the install (or uninstall) SQL with the given names, for psql',
  details: [
    'Prints one of the scripts in sql/ preceded by \\set lines for the names given, ready to pipe',
    'into psql: pgq-bridge sql --api-role bridge | psql -X -v ON_ERROR_STOP=1 "$DATABASE_URL".',
    'Values are passed through exactly (quotes, backslashes and newlines cannot end the line);',
    'an option the chosen script does not read is refused. --uninstall --hardened removes the',
    'hardened function (it has the same signature as the plain one); --batch cannot be',
    'combined with --hardened. --ledger installs the ledger beside the functions already there.',
  ],
  options,
  readsConfig: false,
  exitCodes: { [EXIT.ok]: 'the script was printed' },
  run(values) {
    const file = scriptFile(values);
    const script = readFileSync(new URL(`../../sql/${file}`, import.meta.url), 'utf8');
    const accepted = scriptVariables(script);
    const sets: string[] = [];
    for (const [option, spec] of Object.entries(VARIABLES)) {
      const value = values[option as keyof typeof VARIABLES];
      if (value === undefined) continue;
      const variable = option.replaceAll('-', '_');
      if (!accepted.has(variable)) throw new UsageError(`--${option} does not apply to sql/${file}`, 'sql');
      if (spec.identifier && Buffer.byteLength(value) > MAX_NAME_BYTES) {
        throw new UsageError(
          `--${option}: ${Buffer.byteLength(value)} bytes; PostgreSQL names are at most ${MAX_NAME_BYTES}`,
          'sql',
        );
      }
      sets.push(`${psqlSet(variable, value)}\n`);
    }
    process.stdout.write(`${sets.join('')}${script}`);
    return EXIT.ok;
  },
});

function scriptFile(values: {
  batch?: boolean;
  hardened?: boolean;
  ledger?: boolean;
  uninstall?: boolean;
}): string {
  if (values.ledger === true && (values.batch === true || values.hardened === true)) {
    throw new UsageError('--ledger goes alone: it wraps whichever functions are installed', 'sql');
  }
  if (values.batch === true && values.hardened === true) {
    throw new UsageError('--batch and --hardened do not combine: there is no hardened bulk function', 'sql');
  }
  const action = values.uninstall === true ? 'uninstall' : 'install';
  if (values.ledger === true) return `${action}-ledger.sql`;
  if (values.batch === true) return `${action}-batch.sql`;
  // The hardened function has the plain one's signature, so the plain uninstall removes it.
  return values.hardened === true && action === 'install' ? 'install-hardened.sql' : `${action}.sql`;
}

/** The psql variables a script reads: the ones it gives a default with `\if :{?name}`. */
export function scriptVariables(script: string): Set<string> {
  return new Set([...script.matchAll(/^\\if :\{\?([a-z_]+)\}/gm)].map((m) => m[1] ?? ''));
}

/**
 * A `\set` line that gives `variable` exactly `value`. In a psql backslash command, single
 * quotes delimit a value in which a backslash escapes the next character and an unquoted newline
 * ends the command, so backslashes and quotes are escaped and control characters written as
 * octal escapes.
 */
export function psqlSet(variable: string, value: string): string {
  const quoted = Array.from(value, (c) => {
    if (c === '\\' || c === "'") return `\\${c}`;
    const code = c.charCodeAt(0);
    return code < 0x20 || code === 0x7f ? `\\${code.toString(8).padStart(3, '0')}` : c;
  }).join('');
  return `\\set ${variable} '${quoted}'`;
}
