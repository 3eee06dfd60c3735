import { checkConfigCommand } from './check-config.ts';
import type { Command } from './command.ts';
import { healthCommand } from './health.ts';
import { runCommand } from './run.ts';
import { sqlCommand } from './sql.ts';

/**
 * Every subcommand, in the order help lists them. A new command is a module exporting a
 * defineCommand(...) and one entry here; parsing, --help and exit codes follow from it.
 */
export const COMMANDS: readonly Command[] = [runCommand, checkConfigCommand, sqlCommand, healthCommand];

export const DEFAULT_COMMAND = runCommand;
