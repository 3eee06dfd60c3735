import { readFileSync } from 'node:fs';
import { ConfigError } from '../errors.ts';
import { parseOptions } from './args.ts';
import { type Command, EXIT, UsageError } from './command.ts';
import { COMMANDS, DEFAULT_COMMAND } from './commands.ts';
import { commandHelp, overviewHelp } from './help.ts';

/**
 * pgq-bridge [COMMAND] [OPTIONS]: picks the command (run when the first argument is an option
 * or absent), parses its options strictly, and turns the two failures every command shares
 * into exit codes: a usage error (2) and an invalid configuration (78). Anything else thrown is
 * a bug and reaches main.ts.
 */
export async function cli(argv: readonly string[]): Promise<number> {
  try {
    return await dispatch(argv);
  } catch (error) {
    if (error instanceof UsageError) {
      const help = error.command === undefined ? 'pgq-bridge --help' : `pgq-bridge ${error.command} --help`;
      process.stderr.write(`pgq-bridge: ${error.message}\nSee '${help}'.\n`);
      return EXIT.usage;
    }
    if (error instanceof ConfigError) {
      const [only, ...more] = error.problems;
      const text = more.length === 0 ? `invalid configuration: ${only}` : error.message;
      process.stderr.write(`pgq-bridge: ${text}\n`);
      return EXIT.config;
    }
    throw error;
  }
}

async function dispatch(argv: readonly string[]): Promise<number> {
  const [first, ...rest] = argv;
  if (first === '--help' || first === '-h' || first === '--version') {
    parseOptions(rest, {}, undefined);
    process.stdout.write(first === '--version' ? `${version()}\n` : overviewHelp(COMMANDS, version()));
    return EXIT.ok;
  }
  if (first === 'help') return help(rest);
  if (first === undefined || first.startsWith('-')) return runCommand(DEFAULT_COMMAND, argv);
  const command = COMMANDS.find((c) => c.name === first);
  if (command === undefined) throw new UsageError(`unknown command ${JSON.stringify(first)}`, undefined);
  return runCommand(command, rest);
}

function help(args: readonly string[]): number {
  const [name, ...extra] = args;
  if (extra.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(extra[0])}`, undefined);
  if (name === undefined) {
    process.stdout.write(overviewHelp(COMMANDS, version()));
    return EXIT.ok;
  }
  const command = COMMANDS.find((c) => c.name === name);
  if (command === undefined) throw new UsageError(`unknown command ${JSON.stringify(name)}`, undefined);
  process.stdout.write(commandHelp(command));
  return EXIT.ok;
}

async function runCommand(command: Command, args: readonly string[]): Promise<number> {
  const { help: wantsHelp, ...values } = parseOptions(
    args,
    { ...command.options, help: { type: 'boolean', short: 'h', description: '' } },
    command.name,
  );
  if (wantsHelp === true) {
    process.stdout.write(commandHelp(command));
    return EXIT.ok;
  }
  return command.run(values);
}

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
    version: string;
  };
  return pkg.version;
}
