import type { Logger } from 'pino';
import { interpretResponse, type RpcResult } from './client.ts';

/**
 * The idempotency ledger's upkeep, for deployments without pg_cron: at start and then every
 * interval, create the coming days' partitions and drop the ones past the retention, through
 * the same PostgREST endpoint the jobs go to. Several replicas may do it at once; both SQL
 * functions allow that. A failed run is logged and the next one tries again; nothing else
 * depends on it (a missed prepare only parks entries in the default partition).
 */

export interface MaintenanceCaller {
  call<T>(
    fn: string,
    body: string,
    interpret: (status: number, text: string, retryAfter: string | undefined) => T | RpcResult,
  ): Promise<T | RpcResult>;
}

export interface LedgerMaintenanceOptions {
  /** sql/install-ledger.sql's ledger_table, which names the functions. */
  readonly table: string;
  readonly intervalMs: number;
}

type Counted = { readonly kind: 'counted'; readonly count: number };

/** Both functions answer with a bare integer: how many partitions they created or dropped. */
function interpretCount(status: number, text: string, retryAfter: string | undefined): Counted | RpcResult {
  if (status >= 200 && status < 300 && /^\s*\d+\s*$/.test(text))
    return { kind: 'counted', count: Number(text) };
  return interpretResponse(status, text, retryAfter);
}

export class LedgerMaintenance {
  readonly #caller: MaintenanceCaller;
  readonly #options: LedgerMaintenanceOptions;
  readonly #logger: Logger;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> | undefined;

  constructor(caller: MaintenanceCaller, options: LedgerMaintenanceOptions, logger: Logger) {
    this.#caller = caller;
    this.#options = options;
    this.#logger = logger;
  }

  start(): void {
    const tick = (): void => {
      this.#running = this.run().finally(() => {
        this.#running = undefined;
      });
    };
    tick();
    this.#timer = setInterval(tick, this.#options.intervalMs);
    // Upkeep alone never keeps the process alive.
    this.#timer.unref();
  }

  /** Stops the schedule and waits for a run in progress. */
  async stop(): Promise<void> {
    clearInterval(this.#timer);
    this.#timer = undefined;
    await this.#running;
  }

  /** One prepare and one prune; resolves when both answered, whatever they answered. */
  async run(): Promise<void> {
    for (const step of ['prepare', 'prune'] as const) {
      const fn = `fn_${this.#options.table}_${step}`;
      const result = await this.#caller.call(fn, '{}', interpretCount);
      if (result.kind === 'counted') {
        const level = result.count > 0 ? 'info' : 'debug';
        this.#logger[level](
          { function: fn, outcome: 'ledger_maintenance', partitions: result.count },
          step === 'prepare' ? 'ledger partitions created' : 'ledger partitions dropped',
        );
        continue;
      }
      this.#logger.warn(
        {
          function: fn,
          outcome: 'ledger_maintenance_failed',
          kind: result.kind,
          ...('status' in result ? { httpStatus: result.status } : {}),
          ...('code' in result ? { code: result.code } : {}),
          error: 'message' in result ? result.message : undefined,
        },
        'ledger maintenance failed; the next run tries again',
      );
    }
  }
}
