import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

/**
 * Options come from flags, then BENCH_* environment variables, then defaults sized for a small
 * (2-core) machine: the whole default run stays within a few minutes.
 */

/** Every scenario, in the order they run. */
export const SCENARIOS = [
  'database',
  'rpc',
  'autocannon',
  'bulk',
  'consume',
  'naive',
  'drain',
  'steady',
  'large',
  'soak',
] as const;
export type ScenarioName = (typeof SCENARIOS)[number];
/** The default run; batch mode adds the bulk ceiling and the large messages. The soak only on request. */
export const DEFAULT_SCENARIOS: readonly ScenarioName[] = [
  'database',
  'rpc',
  'autocannon',
  'consume',
  'naive',
  'drain',
  'steady',
];
const BATCH_SCENARIOS: ReadonlySet<ScenarioName> = new Set(['bulk', 'large']);

export const QUEUE_TYPES = ['classic', 'quorum'] as const;
export type QueueType = (typeof QUEUE_TYPES)[number];

/** compat: the PostgREST-compatible test server; postgrest: `postgrest` on PATH; else a URL. */
export type EndpointChoice =
  | { readonly kind: 'compat' }
  | { readonly kind: 'postgrest' }
  | { readonly kind: 'url'; readonly url: string };

export interface BenchOptions {
  /** Messages pre-loaded for the bridge drain; also the upper bound of jobs per ceiling run. */
  readonly messages: number;
  /** The bridge's concurrency; the ceilings use as many connections or calls in flight. */
  readonly concurrency: number;
  /** The bridge's prefetch; undefined keeps the bridge's default (= concurrency). */
  readonly prefetch: number | undefined;
  /** Seconds each ceiling runs (it stops earlier after `messages` jobs). */
  readonly duration: number;
  readonly naiveDuration: number;
  /** Messages per second in the steady scenarios (one run per rate), and for how many seconds. */
  readonly rates: readonly number[];
  readonly steadyDuration: number;
  /** Messages the bridge handles before the steady measurement starts, so it runs compiled code. */
  readonly steadyWarmup: number;
  /** Longest wait for the bridge to drain its queue before the run is recorded as timed out. */
  readonly drainTimeout: number;
  /** Messages fed to the bridge in the memory soak. */
  readonly soakMessages: number;
  readonly persistent: boolean;
  /** Run the bridge in batch mode (bulk function) instead of one job per call. */
  readonly batch: boolean;
  /** Give every message an id and run the bridge with the idempotency ledger (`_once` functions). */
  readonly ledger: boolean;
  readonly build: boolean;
  readonly scenarios: readonly ScenarioName[];
  /** Queue types the bare consumer and the drain run on. */
  readonly queueTypes: readonly QueueType[];
  readonly endpoint: EndpointChoice;
  /** With a URL endpoint: the database behind it, where the harness counts job rows. */
  readonly endpointDb: string | undefined;
  /** With a URL endpoint: the harness may install the schema there and empty its job tables. */
  readonly endpointSetup: boolean;
  /** Payload sizes of the large-message runs, in bytes. */
  readonly largeSizes: readonly number[];
  /** Payload bytes drained per size; the soak after it publishes twice as many. */
  readonly largeBytes: number;
  /** The bridge's intake.maxInFlightBytes during the large-message runs. */
  readonly largeBudget: number;
  /** Where the bridge writes V8 CPU profiles (node --cpu-prof) in the drain; undefined: not profiled. */
  readonly cpuProf: string | undefined;
  readonly outDir: string;
}

export const USAGE = `usage: npm run bench -- [options]      (each option also as BENCH_<NAME>, e.g. BENCH_MESSAGES)
  --messages N          messages the bridge drains (default 100000)
  --concurrency N       bridge concurrency = ceiling connections / calls in flight (default 10)
  --prefetch N          bridge prefetch (default: the bridge's own, = concurrency)
  --duration S          seconds per ceiling run, database and direct RPC (default 15)
  --naive-duration S    seconds of the prefetch-1 consumer (default 10)
  --rates LIST          steady publish rates, messages/s (default 1000; batch mode 1000,5000,10000)
  --steady-duration S   seconds of steady publishing (default 20)
  --steady-warmup N     messages the bridge handles before the steady measurement (default 5000; 0 = cold)
  --drain-timeout S     give up on the drain after this long (default 300)
  --soak-messages N     messages fed to the bridge in the memory soak (default 1000000;
                        npm run bench:soak runs the soak alone, in batch mode)
  --scenarios LIST      comma-separated subset of ${SCENARIOS.join(',')}
                        (default ${DEFAULT_SCENARIOS.join(',')}; batch mode adds bulk,large)
  --queue-types LIST    queue types of the bare consumer and the drain (default classic,quorum)
  --endpoint E          compat (the PostgREST-compatible test server, default), postgrest (a real
                        postgrest on PATH, started on the scratch database), or the URL of your own
  --endpoint-db URI     with a URL endpoint: the database behind it (job rows are counted there)
  --endpoint-setup      with a URL endpoint: allow installing the schema into that database and
                        emptying its job tables between scenarios (without it, they must exist and be empty)
  --large-sizes LIST    payload bytes of the large-message runs (default 65536,1048576)
  --large-bytes N       payload bytes drained per size; the soak after it takes twice as many (default 67108864)
  --large-budget N      the bridge's intake.maxInFlightBytes in those runs (default 33554432)
  --cpu-prof DIR        run the bridge in the drain under node --cpu-prof, profiles into DIR
  --transient           publish non-persistent messages (default persistent)
  --batch               run the bridge in batch mode (bulk function; default one job per call)
  --ledger              give every message an id and run the bridge with the idempotency ledger
                        (sql/install-ledger.sql, the _once functions), to measure what it costs
  --no-build            use the existing dist/ instead of running npm run build first
  --out DIR             where the JSON results go (default bench/results)`;

export class UsageError extends Error {}

type Env = Readonly<Record<string, string | undefined>>;

export function parseOptions(argv: readonly string[], env: Env = process.env): BenchOptions | 'help' {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      messages: { type: 'string' },
      concurrency: { type: 'string' },
      prefetch: { type: 'string' },
      duration: { type: 'string' },
      'naive-duration': { type: 'string' },
      rates: { type: 'string' },
      'steady-duration': { type: 'string' },
      'steady-warmup': { type: 'string' },
      'drain-timeout': { type: 'string' },
      'soak-messages': { type: 'string' },
      scenarios: { type: 'string' },
      'queue-types': { type: 'string' },
      endpoint: { type: 'string' },
      'endpoint-db': { type: 'string' },
      'endpoint-setup': { type: 'boolean' },
      'large-sizes': { type: 'string' },
      'large-bytes': { type: 'string' },
      'large-budget': { type: 'string' },
      'cpu-prof': { type: 'string' },
      transient: { type: 'boolean' },
      batch: { type: 'boolean' },
      'no-build': { type: 'boolean' },
      ledger: { type: 'boolean' },
      out: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) return 'help';
  const pick = (flag: keyof typeof values): string | undefined => {
    const value = values[flag];
    if (typeof value === 'string') return value;
    return env[`BENCH_${flag.toUpperCase().replaceAll('-', '_')}`] || undefined;
  };
  const int = (flag: keyof typeof values, fallback: number, min: number, max: number): number => {
    const text = pick(flag);
    if (text === undefined) return fallback;
    const value = Number(text);
    if (!Number.isInteger(value) || value < min || value > max) {
      throw new UsageError(`--${flag} must be an integer from ${min} to ${max}, got ${JSON.stringify(text)}`);
    }
    return value;
  };
  const list = (
    flag: keyof typeof values,
    fallback: readonly number[],
    min: number,
    max: number,
  ): number[] => {
    const text = pick(flag);
    if (text === undefined) return [...fallback];
    const items = text.split(',').map((item) => Number(item.trim()));
    if (items.length === 0 || items.some((value) => !Number.isInteger(value) || value < min || value > max)) {
      throw new UsageError(
        `--${flag} takes integers from ${min} to ${max}, comma-separated, got ${JSON.stringify(text)}`,
      );
    }
    return items;
  };
  const batch = values.batch ?? env.BENCH_BATCH === '1';
  const ledger = values.ledger ?? env.BENCH_LEDGER === '1';
  const endpoint = parseEndpoint(pick('endpoint'));
  if (ledger && endpoint.kind === 'url') {
    throw new UsageError('--ledger runs on the scratch database only, not behind --endpoint URL');
  }
  const endpointDb = pick('endpoint-db');
  if (endpoint.kind === 'url' && endpointDb === undefined) {
    throw new UsageError(
      '--endpoint URL needs --endpoint-db: the database behind it, where job rows are counted',
    );
  }
  const prefetchText = pick('prefetch');
  const concurrency = int('concurrency', 10, 1, 1000);
  const prefetch = prefetchText === undefined ? undefined : int('prefetch', 0, concurrency, 65535);
  return {
    messages: int('messages', 100_000, 100, 2_000_000),
    concurrency,
    prefetch,
    duration: int('duration', 15, 1, 600),
    naiveDuration: int('naive-duration', 10, 1, 600),
    rates: list('rates', batch ? [1000, 5000, 10_000] : [1000], 1, 100_000),
    steadyDuration: int('steady-duration', 20, 1, 600),
    steadyWarmup: int('steady-warmup', 5000, 0, 1_000_000),
    drainTimeout: int('drain-timeout', 300, 10, 3600),
    soakMessages: int('soak-messages', 1_000_000, 1000, 100_000_000),
    persistent: !(values.transient ?? env.BENCH_TRANSIENT === '1'),
    batch,
    ledger,
    build: !(values['no-build'] ?? env.BENCH_NO_BUILD === '1'),
    scenarios: parseScenarios(pick('scenarios'), batch),
    queueTypes: parseQueueTypes(pick('queue-types')),
    endpoint,
    endpointDb,
    endpointSetup: values['endpoint-setup'] ?? env.BENCH_ENDPOINT_SETUP === '1',
    largeSizes: list('large-sizes', [64 * 1024, 1024 * 1024], 1, 64 * 1024 * 1024),
    largeBytes: int('large-bytes', 64 * 1024 * 1024, 1024 * 1024, 16 * 1024 * 1024 * 1024),
    largeBudget: int('large-budget', 32 * 1024 * 1024, 1024 * 1024, 4 * 1024 * 1024 * 1024),
    cpuProf: pick('cpu-prof'),
    outDir: pick('out') ?? fileURLToPath(new URL('./results', import.meta.url)),
  };
}

/** One scenario run: the bare consumer and the drain once per queue type, the steady run once per rate. */
export interface Step {
  readonly name: ScenarioName;
  readonly queueType: QueueType;
  /** steady: messages per second. */
  readonly rate?: number;
  /** large: payload bytes. */
  readonly payloadBytes?: number;
}

/**
 * The scenarios as they run. With a drain, the direct-RPC ceiling runs again after the last one:
 * the machine's speed drifts within minutes, and the drain is compared with the mean of the two.
 */
export function runOrder(
  options: Pick<BenchOptions, 'scenarios' | 'queueTypes' | 'rates' | 'largeSizes'>,
): Step[] {
  const steps: Step[] = [];
  const [firstType = 'classic'] = options.queueTypes;
  for (const name of options.scenarios) {
    if (name === 'consume' || name === 'drain') {
      for (const queueType of options.queueTypes) steps.push({ name, queueType });
    } else if (name === 'steady') {
      for (const rate of options.rates) steps.push({ name, queueType: firstType, rate });
    } else if (name === 'large') {
      for (const payloadBytes of options.largeSizes) steps.push({ name, queueType: firstType, payloadBytes });
    } else {
      steps.push({ name, queueType: firstType });
    }
    if (name === 'drain' && options.scenarios.includes('rpc'))
      steps.push({ name: 'rpc', queueType: firstType });
  }
  return steps;
}

function parseScenarios(text: string | undefined, batch: boolean): readonly ScenarioName[] {
  if (text === undefined) {
    return SCENARIOS.filter(
      (name) => DEFAULT_SCENARIOS.includes(name) || (batch && BATCH_SCENARIOS.has(name)),
    );
  }
  const names = text
    .split(',')
    .map((name) => name.trim())
    .filter((name) => name !== '');
  const known = new Set<string>(SCENARIOS);
  const unknown = names.filter((name) => !known.has(name));
  if (unknown.length > 0 || names.length === 0) {
    throw new UsageError(`--scenarios takes a subset of ${SCENARIOS.join(',')}, got ${JSON.stringify(text)}`);
  }
  // Always in the canonical order, so the ceilings are known when the bridge rows are reported.
  return SCENARIOS.filter((name) => names.includes(name));
}

function parseQueueTypes(text: string | undefined): readonly QueueType[] {
  if (text === undefined) return QUEUE_TYPES;
  const names = text.split(',').map((name) => name.trim());
  const types = QUEUE_TYPES.filter((type) => names.includes(type));
  if (types.length === 0 || types.length !== new Set(names).size) {
    throw new UsageError(
      `--queue-types takes a subset of ${QUEUE_TYPES.join(',')}, got ${JSON.stringify(text)}`,
    );
  }
  return types;
}

export function parseEndpoint(text: string | undefined): EndpointChoice {
  if (text === undefined || text === 'compat') return { kind: 'compat' };
  if (text === 'postgrest') return { kind: 'postgrest' };
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new UsageError(`--endpoint takes compat, postgrest or an http(s) URL, got ${JSON.stringify(text)}`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new UsageError(`--endpoint URL must be http or https, got ${JSON.stringify(text)}`);
  }
  return { kind: 'url', url: url.href.replace(/\/+$/, '') };
}
