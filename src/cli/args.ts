import { parseArgs } from 'node:util';
import { type OptionTable, type OptionValues, UsageError } from './command.ts';

/**
 * Strict parsing with node:util's parseArgs: an unknown option, a missing value or a stray
 * argument is a usage error. parseArgs decides; its error is then described in one line from the
 * offending token (found by a lenient second pass), because the built-in messages run to
 * several sentences and name no fix.
 */
export function parseOptions<O extends OptionTable>(
  args: readonly string[],
  options: O,
  command: string | undefined,
): OptionValues<O> {
  const config = { args: [...args], options, strict: true, allowPositionals: false } as const;
  try {
    return parseArgs(config).values as OptionValues<O>;
  } catch (error) {
    if (!isParseArgsError(error)) throw error;
    throw new UsageError(describeParseError(args, options) ?? error.message, command);
  }
}

function isParseArgsError(error: unknown): error is Error & { code: string } {
  return (
    error instanceof Error &&
    'code' in error &&
    typeof error.code === 'string' &&
    error.code.startsWith('ERR_PARSE_ARGS_')
  );
}

function describeParseError(args: readonly string[], options: OptionTable): string | undefined {
  const { tokens } = parseArgs({
    args: [...args],
    options,
    strict: false,
    tokens: true,
    allowPositionals: true,
  });
  for (const token of tokens) {
    if (token.kind === 'positional') return `unexpected argument ${JSON.stringify(token.value)}`;
    if (token.kind !== 'option') continue;
    const spec = options[token.name];
    if (spec === undefined) {
      const guess = closest(token.name, Object.keys(options));
      return `unknown option ${token.rawName}${guess === undefined ? '' : ` (did you mean --${guess}?)`}`;
    }
    if (spec.type === 'boolean' && token.value !== undefined) return `${token.rawName} takes no value`;
    if (spec.type === 'string' && token.value === undefined) return `${token.rawName} needs a value`;
    if (spec.type === 'string' && token.inlineValue === false && token.value?.startsWith('-')) {
      return `${token.rawName} needs a value, got ${token.value} (write ${token.rawName}=${token.value} if that is the value)`;
    }
  }
  return undefined;
}

/** The known name within two edits of a mistyped one, if exactly one is nearest. */
export function closest(typed: string, known: readonly string[]): string | undefined {
  const scored = known.map((name) => [name, editDistance(typed, name)] as const).filter(([, d]) => d <= 2);
  const best = Math.min(...scored.map(([, d]) => d));
  const nearest = scored.filter(([, d]) => d === best);
  return nearest.length === 1 ? nearest[0]?.[0] : undefined;
}

/** Levenshtein distance: single-character insertions, deletions and substitutions. */
export function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const substitution = (previous[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1);
      current[j] = Math.min((previous[j] ?? 0) + 1, (current[j - 1] ?? 0) + 1, substitution);
    }
    previous = current;
  }
  return previous[b.length] ?? 0;
}
