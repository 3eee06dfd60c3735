import { readFileSync } from 'node:fs';
import { validateHeaderValue } from 'node:http';
import { z } from 'zod';
import { ConfigError, toError } from '../errors.ts';
import { expandHosts } from './broker-urls.ts';
import { idempotencySchema, ledgerSchema } from './idempotency.ts';

/**
 * Configuration is read once at start: a JSON file, then a few environment variables for
 * endpoints and secrets (so a container can keep secrets out of the mounted file). The result is
 * validated as a whole and frozen; a bad config produces one line per problem naming the key.
 */

const durationMs = (description: string, defaultValue: number) =>
  z.number().int().min(0).default(defaultValue).describe(description);

/** A wait that a loop repeats: zero would turn the loop into a hot spin. */
const delayMs = (description: string, defaultValue: number) =>
  z.number().int().min(1).default(defaultValue).describe(description);

/**
 * A secret rendered into the environment or a file often ends with a newline; an HTTP header
 * value cannot hold one, so it is trimmed, and what is still not a valid header value is refused
 * here rather than by every request.
 */
export const bearerTokenText = z
  .string()
  .trim()
  .min(1)
  .refine((token) => isHeaderValue(`Bearer ${token}`), 'contains characters an HTTP header cannot carry');

export function isHeaderValue(value: string): boolean {
  try {
    validateHeaderValue('authorization', value);
    return true;
  } catch {
    return false;
  }
}

const amqpUrl = z.string().regex(/^amqps?:\/\/[^\s]+$/, 'must be an amqp:// or amqps:// URL');

const httpUrl = z
  .string()
  .regex(/^https?:\/\/[^\s/]+(\/[^\s]*)?$/, 'must be an http:// or https:// URL')
  .describe(
    'Base URL of PostgREST; the bridge posts to {url}/rpc/{function}. Env: PGQ_BRIDGE_POSTGREST_URL.',
  );

export const DEFAULT_BATCH_MAX_SIZE = 100;

/**
 * A source's prefetch unless configured. Single mode: three deliveries per call in flight, so a
 * call that returns finds its next message waiting instead of waiting a broker round trip, and
 * acks can wait to share a frame (see amqp/acks.ts) without leaving a call idle. Batch mode:
 * every bulk call in flight needs a full batch of deliveries to draw from.
 */
export function defaultPrefetch(
  concurrency: number,
  batch: { readonly enabled: boolean; readonly maxSize: number },
): number {
  return concurrency * (batch.enabled ? batch.maxSize : 3);
}

const identifier = z.string().regex(/^[A-Za-z_][A-Za-z0-9_$]*$/, 'must be a plain SQL identifier');

const sourceSchema = z
  .strictObject({
    queue: z.string().min(1).max(255).describe('Queue to consume from.'),
    mode: z
      .enum(['envelope', 'raw'])
      .default('envelope')
      .describe(
        '`envelope`: the body is a JSON object with the enqueue arguments. `raw`: the body is the payload.',
      ),
    concurrency: z
      .number()
      .int()
      .min(1)
      .max(1000)
      .optional()
      .describe('RPC calls in flight for this source. Default: top-level `concurrency`.'),
    prefetch: z
      .number()
      .int()
      .min(1)
      .max(65535)
      .optional()
      .describe(
        'AMQP prefetch for this source; at least its concurrency. Default: 3 × its concurrency (batch mode: concurrency × batch.maxSize).',
      ),
    deadLetterQueue: z
      .string()
      .min(1)
      .max(255)
      .optional()
      .describe('Queue that receives messages that can never succeed. Default: `<queue>.dead`.'),
    declare: z
      .boolean()
      .default(true)
      .describe('Declare the source queue (durable) at start; when false it must already exist.'),
    queueArguments: z
      .record(z.string(), z.union([z.string(), z.number(), z.boolean()]))
      .default({})
      .describe('Arguments for declaring the source queue, e.g. {"x-queue-type": "quorum"}.'),
    deadLetterQueueArguments: z
      .record(z.string(), z.union([z.string(), z.number(), z.boolean()]))
      .default({})
      .describe(
        'Arguments for declaring the dead-letter queue; must match a pre-declared one, e.g. {"x-queue-type": "quorum"}.',
      ),
    entrypoint: z
      .string()
      .min(1)
      .optional()
      .describe(
        'raw mode: the entrypoint of every job from this queue (fallback when the header is absent).',
      ),
    entrypointHeader: z
      .string()
      .min(1)
      .optional()
      .describe('raw mode: AMQP header that carries the entrypoint.'),
    dedupeKeyFromMessageId: z
      .boolean()
      .default(false)
      .describe(
        'Use the AMQP message-id as dedupe_key when the message has none (makes redelivery idempotent).',
      ),
    idempotency: idempotencySchema.optional(),
  })
  .superRefine((source, ctx) => {
    if (source.mode === 'raw' && source.entrypoint === undefined && source.entrypointHeader === undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['entrypoint'],
        message: 'raw mode needs entrypoint or entrypointHeader',
      });
    }
    if (source.mode === 'envelope') {
      for (const key of ['entrypoint', 'entrypointHeader'] as const) {
        if (source[key] !== undefined) {
          ctx.addIssue({
            code: 'custom',
            path: [key],
            message: 'only valid in raw mode (envelopes carry it)',
          });
        }
      }
    }
  });

export const configSchema = z
  .strictObject({
    amqp: z
      .strictObject({
        url: amqpUrl
          .optional()
          .describe(
            'Broker URL, credentials included; a cluster as one URL with several hosts (amqp://u:p@rabbit-0,rabbit-1:5672,rabbit-2/vhost). Secret. Env: PGQ_BRIDGE_AMQP_URL.',
          ),
        urls: z
          .array(amqpUrl)
          .min(1)
          .optional()
          .describe(
            'Instead of `url`: one URL per cluster node. Each replica starts at its own node and moves to the next when one fails or refuses. Secret. Env: PGQ_BRIDGE_AMQP_URLS (separated by spaces or commas).',
          ),
        heartbeatSeconds: z
          .number()
          .int()
          .min(0)
          .max(600)
          .default(20)
          .describe('AMQP heartbeat; a dead broker is noticed after two silent intervals. 0 disables.'),
        connectionName: z
          .string()
          .default('pgq-bridge')
          .describe('Shown in the RabbitMQ management UI and `rabbitmqctl list_connections`.'),
        reconnectInitialDelayMs: delayMs(
          'First reconnect delay; doubles per failed attempt, with jitter.',
          500,
        ),
        reconnectMaxDelayMs: delayMs('Upper bound of the reconnect delay.', 30_000),
        connectTimeoutMs: delayMs(
          'Deadline of one connection attempt (TCP, TLS, AMQP handshake, setup) and of closing; then it is abandoned and the next node is tried (a node behind a dropped route never refuses).',
          10_000,
        ),
        confirmTimeoutMs: z
          .number()
          .int()
          .min(100)
          .default(15_000)
          .describe(
            'Longest wait for the broker to confirm a dead letter or reply (a blocked broker never confirms); then it is retried.',
          ),
        tls: z
          .strictObject({
            caFile: z
              .string()
              .min(1)
              .optional()
              .describe('PEM file of the CA that signed the broker certificate.'),
            certFile: z.string().min(1).optional().describe('PEM client certificate (for mutual TLS).'),
            keyFile: z.string().min(1).optional().describe('PEM private key of the client certificate.'),
            passphrase: z
              .string()
              .optional()
              .describe('Passphrase of the key. Secret. Env: PGQ_BRIDGE_AMQP_TLS_PASSPHRASE.'),
            servername: z
              .string()
              .min(1)
              .optional()
              .describe('TLS server name (SNI) when it differs from the host.'),
          })
          .optional()
          .describe('TLS for amqps:// URLs.'),
      })
      .superRefine((amqp, ctx) => {
        if ((amqp.url === undefined) === (amqp.urls === undefined)) {
          ctx.addIssue({
            code: 'custom',
            path: ['url'],
            message: amqp.url === undefined ? 'url or urls is required' : 'choose one of url, urls',
          });
        }
      })
      .describe('RabbitMQ connection.'),
    postgrest: z
      .strictObject({
        url: httpUrl,
        function: identifier.default('fn_pgqueuer_enqueue').describe('Name of the enqueue function.'),
        schema: identifier
          .optional()
          .describe('Sent as Content-Profile to select the exposed schema that holds the function.'),
        timeoutMs: z.number().int().min(1).default(10_000).describe('Per-request timeout.'),
        probeIntervalMs: delayMs(
          'How often the endpoint is checked (OpenAPI root: reachable, token accepted, functions listed) for readiness.',
          30_000,
        ),
        dedupeConstraint: z
          .string()
          .min(1)
          .default('pgqueuer_unique_dedupe_key')
          .describe(
            "The unique index on dedupe_key: only a conflict on it means 'already queued'; any other unique violation is a failure.",
          ),
        bearerToken: bearerTokenText
          .optional()
          .describe(
            'Static bearer token (a JWT PostgREST accepts). Secret. Env: PGQ_BRIDGE_POSTGREST_TOKEN.',
          ),
        bearerTokenFile: z
          .string()
          .min(1)
          .optional()
          .describe(
            'File holding the bearer token (a mounted secret); re-read when it changes and after a 401.',
          ),
        jwt: z
          .strictObject({
            secret: z
              .string()
              .min(32, "must be at least 32 characters, as PostgREST's jwt-secret")
              .describe(
                'HS256 secret shared with PostgREST (jwt-secret). Secret. Env: PGQ_BRIDGE_JWT_SECRET.',
              ),
            role: z.string().min(1).describe('Database role the tokens name (the `role` claim).'),
            expiresInSeconds: z
              .number()
              .int()
              .min(10)
              .default(300)
              .describe('Token lifetime; a new one is minted well before it expires.'),
            audience: z.string().min(1).optional().describe('`aud` claim, when PostgREST sets jwt-aud.'),
          })
          .optional()
          .describe('Mint short-lived JWTs instead of using a static token.'),
        caFile: z
          .string()
          .min(1)
          .optional()
          .describe('PEM CA for an https:// PostgREST with a private certificate.'),
        dbPool: z
          .number()
          .int()
          .min(1)
          .optional()
          .describe(
            "PostgREST's db-pool setting, when known; `check-config` warns if the sources' total concurrency exceeds it.",
          ),
      })
      .superRefine((postgrest, ctx) => {
        const ways = (['bearerToken', 'bearerTokenFile', 'jwt'] as const).filter(
          (k) => postgrest[k] !== undefined,
        );
        if (ways.length > 1) {
          ctx.addIssue({
            code: 'custom',
            path: [ways[1] ?? ''],
            message: `choose one of ${ways.join(', ')}`,
          });
        }
      })
      .describe('PostgREST endpoint.'),
    concurrency: z
      .number()
      .int()
      .min(1)
      .max(1000)
      .default(10)
      .describe("Default RPC calls in flight per source; keep the sum at or below PostgREST's db-pool (10)."),
    sources: z.array(sourceSchema).min(1).describe('Queues to consume.'),
    retry: z
      .strictObject({
        initialDelayMs: delayMs(
          'First retry delay after a transient failure (exponential, full jitter).',
          200,
        ),
        maxDelayMs: delayMs('Upper bound of one retry delay.', 30_000),
        maxHoldMs: z
          .number()
          .int()
          .min(1000)
          .default(15 * 60_000)
          .describe(
            "How long a failing delivery is held before it is returned to the queue; keep below RabbitMQ's consumer_timeout (30 min).",
          ),
        poisonAttempts: z
          .number()
          .int()
          .min(1)
          .default(8)
          .describe(
            'Failures of one delivery, while other messages succeed, after which it is handed back (a transient error) or dead-lettered (an unexplained one).',
          ),
        maxDeliveries: z
          .number()
          .int()
          .min(1)
          .default(5)
          .describe(
            'Deliveries of a message that keeps failing while others succeed, after which it is dead-lettered as repeated_failure.',
          ),
      })
      .prefault({})
      .describe('Retry policy.'),
    batch: z
      .strictObject({
        enabled: z
          .boolean()
          .default(false)
          .describe(
            'Group deliveries into calls of the bulk function (sql/install-batch.sql). Default: one job per call.',
          ),
        function: identifier.default('fn_pgqueuer_enqueue_batch').describe('Name of the bulk function.'),
        maxSize: z
          .number()
          .int()
          .min(1)
          .max(10_000)
          .default(DEFAULT_BATCH_MAX_SIZE)
          .describe('Most jobs in one bulk call.'),
        lingerMs: z
          .number()
          .int()
          .min(0)
          .max(10_000)
          .default(5)
          .describe('How long a partial batch waits for more deliveries before it is sent.'),
        timeoutMs: z
          .number()
          .int()
          .min(1)
          .default(30_000)
          .describe(
            'Timeout of one bulk call. A call that times out may have committed, so the next attempt is split.',
          ),
        maxBytes: z
          .number()
          .int()
          .min(1024)
          .max(256 * 1024 * 1024)
          .default(32 * 1024 * 1024)
          .describe('Largest request body of one bulk call; a batch that would exceed it is sent in parts.'),
      })
      .prefault({})
      .describe('Batch mode. Each source then has `concurrency` bulk calls in flight.'),
    policy: z
      .strictObject({
        entrypoints: z
          .array(z.string().min(1))
          .optional()
          .describe('Allowed entrypoints: exact names or patterns with `*` (e.g. "report_*"). Absent: any.'),
        maxPayloadBytes: z
          .number()
          .int()
          .min(0)
          .default(16 * 1024 * 1024)
          .describe('Largest payload accepted; larger messages are dead-lettered (payload_too_large).'),
        maxHeadersBytes: z
          .number()
          .int()
          .min(0)
          .default(64 * 1024)
          .describe(
            'Largest job headers (JSON text) accepted; larger are dead-lettered (headers_too_large).',
          ),
        maxJobsPerSecond: z
          .number()
          .positive()
          .optional()
          .describe('Rate limit on enqueue calls across the process. Absent: unlimited.'),
      })
      .prefault({})
      .describe('Limits on what may be enqueued.'),
    intake: z
      .strictObject({
        maxInFlightBytes: z
          .number()
          .int()
          .min(1024 * 1024)
          .default(256 * 1024 * 1024)
          .describe(
            'Bytes held at once across sources: message bodies, and for messages being called their decoded payload and request body (the payload as hex); past it intake pauses until deliveries finish.',
          ),
      })
      .prefault({})
      .describe('Memory bounds of intake.'),
    ledger: ledgerSchema,
    shutdown: z
      .strictObject({
        graceMs: durationMs('On SIGTERM/SIGINT, how long in-flight deliveries may take to finish.', 20_000),
      })
      .prefault({})
      .describe('Graceful shutdown.'),
    http: z
      .strictObject({
        enabled: z.boolean().default(true).describe('Serve /healthz, /readyz and /metrics.'),
        host: z.string().default('0.0.0.0').describe('Listen address.'),
        port: z
          .number()
          .int()
          .min(0)
          .max(65535)
          .default(9464)
          .describe('Listen port. Env: PGQ_BRIDGE_HTTP_PORT.'),
      })
      .prefault({})
      .describe('Health and metrics endpoint.'),
    log: z
      .strictObject({
        level: z
          .enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'])
          .default('info')
          .describe('Log level. Env: PGQ_BRIDGE_LOG_LEVEL.'),
      })
      .prefault({})
      .describe('Logging.'),
  })
  .superRefine((config, ctx) => {
    const seen = new Set<string>();
    config.sources.forEach((source, index) => {
      if (seen.has(source.queue)) {
        ctx.addIssue({ code: 'custom', path: ['sources', index, 'queue'], message: 'queue listed twice' });
      }
      seen.add(source.queue);
    });
  });

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

/** Environment variables that override one key each; the value is a JSON-compatible string. */
export const ENV_OVERRIDES = {
  PGQ_BRIDGE_AMQP_URL: ['amqp', 'url'],
  PGQ_BRIDGE_AMQP_URLS: ['amqp', 'urls'],
  PGQ_BRIDGE_AMQP_TLS_PASSPHRASE: ['amqp', 'tls', 'passphrase'],
  PGQ_BRIDGE_POSTGREST_URL: ['postgrest', 'url'],
  PGQ_BRIDGE_POSTGREST_TOKEN: ['postgrest', 'bearerToken'],
  PGQ_BRIDGE_JWT_SECRET: ['postgrest', 'jwt', 'secret'],
  PGQ_BRIDGE_LOG_LEVEL: ['log', 'level'],
  PGQ_BRIDGE_HTTP_PORT: ['http', 'port'],
} as const satisfies Record<string, readonly string[]>;

/** A broker URL from the environment replaces the file's, whichever of the two keys each uses. */
const REPLACES: Readonly<Record<string, string>> = { url: 'urls', urls: 'url' };

/** The value a variable sets: a port as a number, a URL list as an array. */
function envValue(key: string, value: string): unknown {
  // A port that is not plain digits stays a string, so the schema names the variable and refuses it.
  if (key === 'port') return /^\d+$/.test(value) ? Number(value) : value;
  // Split only where the next URL starts: a multi-host URL has commas of its own.
  if (key === 'urls') return value.trim().split(/[\s,]+(?=amqps?:\/\/)/i);
  return value;
}

export const CONFIG_PATH_ENV = 'PGQ_BRIDGE_CONFIG';

type Env = Readonly<Record<string, string | undefined>>;

/** Validates raw config (the parsed JSON file) with env overrides applied; throws ConfigError. */
export function parseConfig(raw: unknown, env: Env = {}): Config {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new ConfigError(['(root): the config file must hold a JSON object']);
  }
  const merged: Record<string, unknown> = structuredClone(raw as Record<string, unknown>);
  const envByPath = new Map<string, string>();
  for (const [name, path] of Object.entries(ENV_OVERRIDES)) {
    const value = env[name];
    if (value === undefined || value === '') continue;
    let target = merged;
    for (const key of path.slice(0, -1)) {
      const child = target[key];
      const object =
        typeof child === 'object' && child !== null && !Array.isArray(child)
          ? (child as Record<string, unknown>)
          : {};
      target[key] = object;
      target = object;
    }
    const key = path[path.length - 1] as string;
    target[key] = envValue(key, value);
    envByPath.set(path.join('.'), name);
    const replaced = REPLACES[key];
    if (replaced !== undefined && !envByPath.has([...path.slice(0, -1), replaced].join('.'))) {
      delete target[replaced];
    }
  }

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

/** The config with secrets replaced, for printing and logging. */
export function maskSecrets(config: Config): unknown {
  const { amqp, postgrest } = config;
  return {
    ...config,
    amqp: {
      ...amqp,
      ...(amqp.url === undefined ? {} : { url: maskUrlPassword(amqp.url) }),
      ...(amqp.urls === undefined ? {} : { urls: amqp.urls.map(maskUrlPassword) }),
      nodes: amqp.nodes.map(maskUrlPassword),
      ...(amqp.tls?.passphrase === undefined ? {} : { tls: { ...amqp.tls, passphrase: '***' } }),
    },
    postgrest: {
      ...postgrest,
      url: maskUrlPassword(postgrest.url),
      ...(postgrest.bearerToken === undefined ? {} : { bearerToken: '***' }),
      ...(postgrest.jwt === undefined ? {} : { jwt: { ...postgrest.jwt, secret: '***' } }),
    },
  };
}

export function maskUrlPassword(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password === '') return url;
    parsed.password = '***';
    return parsed.toString().replace('%2A%2A%2A', '***');
  } catch {
    return url.replace(/\/\/.*@/, '//***@');
  }
}
