import pg from 'pg';
import { RpcClient } from '../src/postgrest/client.ts';
import { jobArgs } from './messages.ts';

/**
 * Closed-loop load: `concurrency` workers, each issuing its next call as soon as the previous
 * one answered, until `maxJobs` calls were made or the time is up. This is how the bridge
 * behaves with a full queue (every slot busy), so the rates are directly comparable.
 */

export interface LoadResult {
  readonly jobs: number;
  readonly errors: number;
  readonly seconds: number;
  /** Per-call latency in ms, one entry per successful call. */
  readonly latenciesMs: Float64Array;
  readonly firstError: string | undefined;
}

export interface LoadOptions {
  readonly concurrency: number;
  readonly maxJobs: number;
  readonly seconds: number;
}

/** Past this many failed calls the run stops: the numbers would measure error handling. */
const MAX_ERRORS = 100;

type Call = (index: number) => Promise<string | undefined>;

async function closedLoop(options: LoadOptions, calls: readonly Call[]): Promise<LoadResult> {
  const latencies = new Float64Array(options.maxJobs);
  let next = 0;
  let done = 0;
  let errors = 0;
  let firstError: string | undefined;
  const started = performance.now();
  const deadline = started + options.seconds * 1000;
  const worker = async (call: Call): Promise<void> => {
    while (next < options.maxJobs && errors < MAX_ERRORS && performance.now() < deadline) {
      const index = next++;
      const callStarted = performance.now();
      const error = await call(index);
      if (error === undefined) latencies[done++] = performance.now() - callStarted;
      else {
        errors++;
        firstError ??= error;
      }
    }
  };
  await Promise.all(calls.map(worker));
  return {
    jobs: done,
    errors,
    seconds: (performance.now() - started) / 1000,
    latenciesMs: latencies.subarray(0, done),
    firstError,
  };
}

/**
 * One autocommit `SELECT fn_pgqueuer_enqueue(...)` per job over plain connections, as the API
 * role: what the database can do without any HTTP in between. A prepared statement, like the
 * ones the RPC server uses.
 */
export async function databaseCeiling(uri: string, options: LoadOptions): Promise<LoadResult> {
  const clients: pg.Client[] = [];
  try {
    for (let i = 0; i < options.concurrency; i++) {
      const client = new pg.Client({ connectionString: uri });
      client.on('error', () => {});
      clients.push(client);
      await client.connect();
      await client.query('SET ROLE pgqapi');
    }
    const calls = clients.map(
      (client): Call =>
        async (index) => {
          const args = jobArgs(index, Date.now());
          try {
            await client.query({
              name: 'bench_enqueue',
              text: 'SELECT public.fn_pgqueuer_enqueue(entrypoint => $1, payload => $2, headers => $3::jsonb) AS id',
              values: [args.entrypoint, args.payload, args.headersJson],
            });
            return undefined;
          } catch (error) {
            return String(error);
          }
        },
    );
    return await closedLoop(options, calls);
  } finally {
    await Promise.all(clients.map((client) => client.end().catch(() => undefined)));
  }
}

/** The bridge's own PostgREST client and body encoding, without RabbitMQ. */
export function rpcClient(url: string, concurrency: number): RpcClient {
  return new RpcClient({ url, function: 'fn_pgqueuer_enqueue', timeoutMs: 10_000, maxSockets: concurrency });
}

export async function directRpc(url: string, options: LoadOptions): Promise<LoadResult> {
  const client = rpcClient(url, options.concurrency);
  try {
    const call: Call = async (index) => {
      const result = await client.enqueue(jobArgs(index, Date.now()));
      if (result.kind === 'enqueued') return undefined;
      return JSON.stringify(result);
    };
    return await closedLoop(
      options,
      Array.from({ length: options.concurrency }, () => call),
    );
  } finally {
    client.close();
  }
}
