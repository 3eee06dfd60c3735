import { readFileSync } from 'node:fs';
import type { z } from 'zod';
import { ConfigError, toError } from '../errors.ts';
import { expandHosts } from './broker-urls.ts';
import { applyEnv, CONFIG_PATH_ENV, type Env } from './env.ts';
import { configSchema } from './schema.ts';
import { defaultPrefetch } from './source-schema.ts';

/**
 * Configuration is read once at start: a JSON file, then a few environment variables for
 * endpoints and secrets (env.ts). The result is validated as a whole (schema.ts) and frozen; a
 * bad config produces one line per problem naming the key.
 */

type ParsedConfig = z.output<typeof configSchema>;
type ParsedSource = ParsedConfig['sources'][number];

export interface SourceConfig extends ParsedSource {
  readonly concurrency: number;
  readonly prefetch: number;
  readonly deadLetterQueue: string;
}

type ParsedAmqp = ParsedConfig['amqp'];

export interface AmqpConfig extends ParsedAmqp {
  /** Every broker URL from `url` or `urls`, multi-host URLs expanded: one per node. */
  readonly nodes: readonly string[];
}

export interface Config extends Omit<ParsedConfig, 'sources' | 'amqp'> {
  readonly amqp: AmqpConfig;
  readonly sources: readonly SourceConfig[];
}

/** Validates raw config (the parsed JSON file) with env overrides applied; throws ConfigError. */
export function parseConfig(raw: unknown, env: Env = {}): Config {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new ConfigError(['(root): the config file must hold a JSON object']);
  }
  const { merged, envByPath } = applyEnv(raw as Record<string, unknown>, env);

  const result = configSchema.safeParse(merged);
  if (!result.success) {
    throw new ConfigError(
      result.error.issues.flatMap((issue) => {
        if (issue.code === 'unrecognized_keys') {
          return issue.keys.map((key) => `${[...issue.path, key].join('.')}: unknown key`);
        }
        const path = issue.path.map(String).join('.');
        const fromEnv = envByPath.get(path);
        return [`${path || '(root)'}${fromEnv ? ` (from ${fromEnv})` : ''}: ${issue.message}`];
      }),
    );
  }
  return freeze(resolve(result.data));
}

function resolve(parsed: ParsedConfig): Config {
  const problems: string[] = [];
  const sources = parsed.sources.map((source, index): SourceConfig => {
    const concurrency = source.concurrency ?? parsed.concurrency;
    const prefetch = source.prefetch ?? defaultPrefetch(concurrency, parsed.batch);
    if (prefetch < concurrency)
      problems.push(`sources.${index}.prefetch: must be at least the concurrency (${concurrency})`);
    const deadLetterQueue = source.deadLetterQueue ?? `${source.queue}.dead`;
    if (deadLetterQueue === source.queue) {
      problems.push(`sources.${index}.deadLetterQueue: must differ from the source queue`);
    }
    return { ...source, concurrency, prefetch, deadLetterQueue };
  });
  const sourceQueues = new Set(sources.map((s) => s.queue));
  sources.forEach((source, index) => {
    if (source.deadLetterQueue !== source.queue && sourceQueues.has(source.deadLetterQueue)) {
      problems.push(
        `sources.${index}.deadLetterQueue: is another source's queue; dead letters would be consumed again`,
      );
    }
  });
  const nodes = (parsed.amqp.urls ?? [parsed.amqp.url ?? '']).flatMap(expandHosts);
  // TLS settings on a plain URL would be silently ignored: the connection would be unencrypted.
  const tls = parsed.amqp.tls;
  if (tls !== undefined && !nodes.every((url) => /^amqps:\/\//i.test(url))) {
    problems.push('amqp.tls: only used with amqps:// URLs');
  }
  if (tls !== undefined && (tls.certFile === undefined) !== (tls.keyFile === undefined)) {
    problems.push('amqp.tls.certFile: certFile and keyFile go together');
  }
  if (parsed.postgrest.caFile !== undefined && !parsed.postgrest.url.startsWith('https://')) {
    problems.push('postgrest.caFile: only used with an https:// URL');
  }
  if (parsed.retry.maxDelayMs < parsed.retry.initialDelayMs) {
    problems.push('retry.maxDelayMs: must be at least retry.initialDelayMs');
  }
  if (parsed.amqp.reconnectMaxDelayMs < parsed.amqp.reconnectInitialDelayMs) {
    problems.push('amqp.reconnectMaxDelayMs: must be at least amqp.reconnectInitialDelayMs');
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return { ...parsed, amqp: { ...parsed.amqp, nodes }, sources };
}

function freeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null) {
    for (const child of Object.values(value)) freeze(child);
    Object.freeze(value);
  }
  return value;
}

/** Reads and validates the config file at `path`, or the one PGQ_BRIDGE_CONFIG names. */
export function loadConfig(path: string | undefined, env: Env = process.env): Config {
  const file = path ?? env[CONFIG_PATH_ENV];
  if (file === undefined || file === '') {
    throw new ConfigError([`(file): no config file; pass --config FILE or set ${CONFIG_PATH_ENV}`]);
  }
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    throw new ConfigError([`(file): cannot read ${file}: ${toError(error).message}`]);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (error) {
    throw new ConfigError([`(file): ${file} is not valid JSON: ${toError(error).message}`]);
  }
  return parseConfig(raw, env);
}
