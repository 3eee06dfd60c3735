import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

/**
 * Options come from flags, then BENCH_* environment variables, then defaults sized for a small
 * (2-core) machine: the whole default run stays within a few minutes.
 */

/** The default run. */
export const DEFAULT_SCENARIOS = ['database', 'rpc', 'naive', 'drain', 'steady'] as const;
/** Every scenario, in the order they run; the soak only on request, since it alone takes minutes. */
export const SCENARIOS = [...DEFAULT_SCENARIOS, 'soak'] as const;
export type ScenarioName = (typeof SCENARIOS)[number];

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
  /** Messages per second in the steady scenario, and for how many seconds. */
  readonly rate: number;
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
  readonly build: boolean;
  readonly scenarios: readonly ScenarioName[];
  readonly outDir: string;
}

export const USAGE = `usage: npm run bench -- [options]      (each option also as BENCH_<NAME>, e.g. BENCH_MESSAGES)
  --messages N          messages the bridge drains (default 100000)
  --concurrency N       bridge concurrency = ceiling connections / calls in flight (default 10)
  --prefetch N          bridge prefetch (default: the bridge's own, = concurrency)
  --duration S          seconds per ceiling run, database and direct RPC (default 15)
  --naive-duration S    seconds of the prefetch-1 consumer (default 10)
  --rate N              steady publish rate, messages/s (default 1000)
  --steady-duration S   seconds of steady publishing (default 20)
  --steady-warmup N     messages the bridge handles before the steady measurement (default 5000; 0 = cold)
  --drain-timeout S     give up on the drain after this long (default 300)
  --soak-messages N     messages fed to the bridge in the memory soak (default 1000000;
                        npm run bench:soak runs the soak alone, in batch mode)
  --scenarios LIST      comma-separated subset of ${SCENARIOS.join(',')} (default ${DEFAULT_SCENARIOS.join(',')})
  --transient           publish non-persistent messages (default persistent)
  --batch               run the bridge in batch mode (bulk function; default one job per call)
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
      rate: { type: 'string' },
      'steady-duration': { type: 'string' },
      'steady-warmup': { type: 'string' },
      'drain-timeout': { type: 'string' },
      'soak-messages': { type: 'string' },
      scenarios: { type: 'string' },
      transient: { type: 'boolean' },
      batch: { type: 'boolean' },
      'no-build': { type: 'boolean' },
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
  const prefetchText = pick('prefetch');
  const concurrency = int('concurrency', 10, 1, 1000);
  const prefetch = prefetchText === undefined ? undefined : int('prefetch', 0, concurrency, 65535);
  return {
    messages: int('messages', 100_000, 100, 2_000_000),
    concurrency,
    prefetch,
    duration: int('duration', 15, 1, 600),
    naiveDuration: int('naive-duration', 10, 1, 600),
    rate: int('rate', 1000, 1, 100_000),
    steadyDuration: int('steady-duration', 20, 1, 600),
    steadyWarmup: int('steady-warmup', 5000, 0, 1_000_000),
    drainTimeout: int('drain-timeout', 300, 10, 3600),
    soakMessages: int('soak-messages', 1_000_000, 1000, 100_000_000),
    persistent: !(values.transient ?? env.BENCH_TRANSIENT === '1'),
    batch: values.batch ?? env.BENCH_BATCH === '1',
    build: !(values['no-build'] ?? env.BENCH_NO_BUILD === '1'),
    scenarios: parseScenarios(pick('scenarios')),
    outDir: pick('out') ?? fileURLToPath(new URL('./results', import.meta.url)),
  };
}

/**
 * The scenarios as they run. With a drain, the direct-RPC ceiling runs on both sides of it: the
 * machine's speed drifts within minutes, and the drain is compared with the mean of the two.
 */
export function runOrder(scenarios: readonly ScenarioName[]): ScenarioName[] {
  const order = [...scenarios];
  const drain = order.indexOf('drain');
  if (drain >= 0 && order.includes('rpc')) order.splice(drain + 1, 0, 'rpc');
  return order;
}

function parseScenarios(text: string | undefined): readonly ScenarioName[] {
  if (text === undefined) return DEFAULT_SCENARIOS;
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
