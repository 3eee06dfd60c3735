/**
 * The shape every subcommand shares, so that parsing, help text and error reporting are done
 * once (cli.ts, args.ts, help.ts) and a new command is one module plus one row in commands.ts.
 */

/** Exit codes (sysexits.h for configuration, as orchestrators and shells expect). */
export const EXIT = { ok: 0, failure: 1, usage: 2, config: 78 } as const;

export interface OptionSpec {
  readonly type: 'string' | 'boolean';
  readonly short?: string;
  /** Placeholder shown in help for a string option, e.g. FILE. */
  readonly value?: string;
  readonly description: string;
}

export type OptionTable = Readonly<Record<string, OptionSpec>>;

/** What strict parsing yields for a table: a value only for options that were given. */
export type OptionValues<O extends OptionTable> = {
  readonly [K in keyof O]?: O[K]['type'] extends 'boolean' ? boolean : string;
};

export interface CommandSpec<O extends OptionTable> {
  readonly name: string;
  /** One line for the command list. */
  readonly summary: string;
  /** Paragraphs for the command's own --help. */
  readonly details?: readonly string[];
  readonly options: O;
  /** The command reads the bridge config: help lists the environment variables and exit 78. */
  readonly readsConfig: boolean;
  /** What 0 (and 1, when the command uses it) mean for this command. */
  readonly exitCodes: Readonly<Partial<Record<number, string>>>;
  run(values: OptionValues<O>): Promise<number> | number;
}

/** A command with its option types erased, as the table holds it. */
export type Command = CommandSpec<OptionTable>;

export function defineCommand<const O extends OptionTable>(spec: CommandSpec<O>): Command {
  return spec as unknown as Command;
}

/** A command line the CLI cannot act on: exit 2 with one line and a pointer to --help. */
export class UsageError extends Error {
  readonly kind = 'usage';
  /** The command whose --help explains the fix; undefined for the tool's own. */
  readonly command: string | undefined;

  constructor(message: string, command: string | undefined) {
    super(message);
    this.name = 'UsageError';
    this.command = command;
  }
}
