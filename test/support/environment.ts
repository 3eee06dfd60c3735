import {
  BATCH_INSTALL_SQL,
  createScratchDatabase,
  LEDGER_INSTALL_SQL,
  runPsql,
  type ScratchDatabase,
} from './pg.ts';
import {
  type PostgrestServer,
  type PostgrestServerOptions,
  startPostgrestServer,
} from './postgrest/server.ts';
import { amqpUrl, queueCounts, TestBroker, uniqueName, waitFor, withBroker } from './rabbit.ts';
import type { JobCount } from './scenario.ts';

/**
 * Everything one integration test file needs, all of it real and all of it its own: a scratch
 * database with PGQueuer's schema and the enqueue function, a PostgREST-compatible RPC server in
 * front of it (switching to the `pgqapi` role per request, as PostgREST's anonymous role), a
 * unique source queue, and a broker connection for publishing and inspecting queues.
 */
export interface Environment {
  readonly db: ScratchDatabase;
  readonly server: PostgrestServer;
  readonly broker: TestBroker;
  readonly amqpUrl: string;
  /** A private RabbitMQ node's name, when the broker is one. */
  readonly node: string | undefined;
  readonly queue: string;
  readonly deadLetterQueue: string;
  /** Runs with the idempotency ledger: every job must be the only one of its message. */
  readonly ledger: boolean;
  /** A complete bridge config (raw JSON form) for this environment, with overrides merged in. */
  bridgeConfig(overrides?: BridgeConfigOverrides): Record<string, unknown>;
  jobCountsByMid(): Promise<JobCount[]>;
  /** Waits until the source queue has nothing ready and nothing unacked. */
  waitForQueueEmpty(timeoutMs?: number): Promise<void>;
  close(): Promise<void>;
}

export interface BridgeConfigOverrides {
  readonly source?: Record<string, unknown>;
  readonly retry?: Record<string, unknown>;
  readonly top?: Record<string, unknown>;
}

export interface EnvironmentOptions {
  readonly amqpUrl?: string;
  readonly node?: string;
  readonly server?: Partial<PostgrestServerOptions>;
  /** Install the bulk function and run bridges in batch mode. */
  readonly batch?: boolean;
  /** Install the idempotency ledger and give the source an identity (the AMQP message-id). */
  readonly ledger?: boolean;
}

/** The two ways the bridge can call PostgREST; correctness tests run in both. */
export const MODES = ['single', 'batch'] as const;
export type Mode = (typeof MODES)[number];

/** A fault scenario runs in each mode at least once, and exactly once with the ledger. */
export interface FaultRun {
  readonly mode: Mode;
  readonly ledger: boolean;
}

export const FAULT_RUNS: readonly FaultRun[] = [false, true].flatMap((ledger) =>
  MODES.map((mode) => ({ mode, ledger })),
);

export function runLabel(run: FaultRun): string {
  return `${run.mode} mode, ${run.ledger ? 'ledger on' : 'at least once'}`;
}

export async function startEnvironment(
  prefix: string,
  options: EnvironmentOptions = {},
): Promise<Environment> {
  const db = await createScratchDatabase(`pgqb_${prefix}`);
  // The ledger's bulk variant wraps the bulk function, so a ledger needs it in either mode.
  if (options.batch === true || options.ledger === true) await runPsql(db.name, BATCH_INSTALL_SQL);
  if (options.ledger === true) await runPsql(db.name, LEDGER_INSTALL_SQL);
  let server: PostgrestServer | undefined;
  let broker: TestBroker | undefined;
  try {
    server = await startPostgrestServer({
      dbUri: db.connectionString,
      anonRole: 'pgqapi',
      ...options.server,
    });
    const url = options.amqpUrl ?? amqpUrl();
    broker = await TestBroker.connect(url);
    const queue = uniqueName(`pgqb-${prefix}`);
    const deadLetterQueue = `${queue}.dead`;
    const rpcServer = server;
    const testBroker = broker;
    return {
      db,
      server: rpcServer,
      broker: testBroker,
      amqpUrl: url,
      node: options.node,
      queue,
      deadLetterQueue,
      ledger: options.ledger === true,
      bridgeConfig: (overrides = {}) => ({
        amqp: { url, heartbeatSeconds: 5, reconnectInitialDelayMs: 100, reconnectMaxDelayMs: 2000 },
        postgrest: { url: rpcServer.url, timeoutMs: 5000 },
        sources: [
          {
            queue,
            ...(options.ledger === true ? { idempotency: { messageId: 'message-id' } } : {}),
            ...overrides.source,
          },
        ],
        retry: { initialDelayMs: 50, maxDelayMs: 1000, ...overrides.retry },
        shutdown: { graceMs: 5000 },
        http: { port: 0 },
        log: { level: 'info' },
        // Small batches, so even a few hundred messages make several bulk calls.
        ...(options.batch === true ? { batch: { enabled: true, maxSize: 20, lingerMs: 5 } } : {}),
        ...overrides.top,
      }),
      jobCountsByMid: async () => {
        const { rows } = await db.pool.query<{ mid: string; count: string }>(
          "SELECT headers->>'mid' AS mid, count(*) AS count FROM pgqueuer GROUP BY 1",
        );
        return rows.map((r) => ({ mid: r.mid, count: Number(r.count) }));
      },
      waitForQueueEmpty: async (timeoutMs = 60_000) => {
        await waitFor(
          async () => {
            const counts = await queueCounts(queue, options.node === undefined ? {} : { node: options.node });
            return counts.ready === 0 && counts.unacked === 0;
          },
          { timeoutMs, intervalMs: 500, message: `queue ${queue} to be empty with nothing unacked` },
        );
      },
      close: async () => {
        await testBroker.close();
        // A fresh connection: a broker fault may have closed the test's own.
        await withBroker(url, (b) => b.deleteQueues(queue, deadLetterQueue)).catch(() => undefined);
        await rpcServer.close();
        await db.drop();
      },
    };
  } catch (error) {
    await broker?.close();
    await server?.close();
    await db.drop();
    throw error;
  }
}
