import { CONFIG_PATH_ENV, ENV_OVERRIDES } from '../config/env.ts';
import { type Command, EXIT, type OptionTable } from './command.ts';

/**
 * Help text generated from the command table, so that it names exactly the options the parser
 * accepts, the environment variables the config reads and the exit codes the commands use.
 */

const HELP_ROW = ['-h, --help', 'show this help'] as const;

const COMMON_EXITS: ReadonlyArray<readonly [number, string, (command: Command) => boolean]> = [
  [EXIT.usage, 'usage error: unknown option, missing value or stray argument', () => true],
  [
    EXIT.config,
    'invalid configuration, or a configured resource unusable (e.g. http.port in use)',
    (c) => c.readsConfig,
  ],
];

export function overviewHelp(commands: readonly Command[], version: string): string {
  const exits = new Map<number, string[]>();
  for (const command of commands) {
    for (const [code, meaning] of Object.entries(command.exitCodes)) {
      if (Number(code) === EXIT.ok || meaning === undefined) continue;
      exits.set(Number(code), [...(exits.get(Number(code)) ?? []), `${command.name}: ${meaning}`]);
    }
  }
  return [
    `pgq-bridge ${version}: consumes RabbitMQ messages and enqueues them as PGQueuer jobs through PostgREST.`,
    '',
    'Usage: pgq-bridge [COMMAND] [OPTIONS]     (no command: run)',
    '       pgq-bridge COMMAND --help          (or: pgq-bridge help COMMAND)',
    '',
    'Commands:',
    ...table(commands.map((c) => [c.name, c.summary])),
    '',
    'Options:',
    ...table([HELP_ROW, ['--version', 'print the version']]),
    '',
    'Environment (read with the config):',
    ...environment(),
    '',
    'Exit codes:',
    ...table([
      [String(EXIT.ok), 'success'],
      ...[...exits].map(([code, meanings]) => [String(code), meanings.join('; ')] as const),
      ...COMMON_EXITS.map(([code, meaning]) => [String(code), meaning] as const),
    ]),
    '',
  ].join('\n');
}

export function commandHelp(command: Command): string {
  const exits = Object.entries(command.exitCodes).flatMap(([code, meaning]) =>
    meaning === undefined ? [] : [[code, meaning] as const],
  );
  return [
    `Usage: pgq-bridge ${command.name} [OPTIONS]`,
    '',
    `${command.summary[0]?.toUpperCase() ?? ''}${command.summary.slice(1)}.`,
    ...(command.details === undefined ? [] : ['', ...command.details]),
    '',
    'Options:',
    ...table([...optionRows(command.options), HELP_ROW]),
    ...(command.readsConfig ? ['', 'Environment:', ...environment()] : []),
    '',
    'Exit codes:',
    ...table([
      ...exits,
      ...COMMON_EXITS.filter(([, , applies]) => applies(command)).map(
        ([code, meaning]) => [String(code), meaning] as const,
      ),
    ]),
    '',
  ].join('\n');
}

function optionRows(options: OptionTable): Array<readonly [string, string]> {
  return Object.entries(options).map(([name, spec]) => {
    const flag = `${spec.short === undefined ? '' : `-${spec.short}, `}--${name}`;
    return [spec.type === 'string' ? `${flag} ${spec.value ?? 'VALUE'}` : flag, spec.description] as const;
  });
}

function environment(): string[] {
  return table([
    [CONFIG_PATH_ENV, 'the config file when --config is not given'],
    ...Object.entries(ENV_OVERRIDES).map(([name, path]) => [name, `overrides ${path.join('.')}`] as const),
  ]);
}

function table(rows: ReadonlyArray<readonly [string, string]>): string[] {
  const width = Math.max(...rows.map(([left]) => left.length));
  return rows.map(([left, right]) => `  ${left.padEnd(width)}  ${right}`);
}
