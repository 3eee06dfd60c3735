import pLimit, { type LimitFunction } from 'p-limit';
import type { EnqueueArgs } from '../message/decode.ts';
import type { Enqueuer } from '../pipeline/pipeline.ts';
import { classify } from './classify.ts';
import type { RpcResult } from './client.ts';

/**
 * Batch mode as an Enqueuer: each delivery still asks for its own job and gets its own answer,
 * so retries, the circuit, dead letters and acks work exactly as in single mode. Underneath,
 * calls that arrive together are grouped (up to `maxSize`, waiting at most `lingerMs` for more)
 * into one call of the bulk function, whose per-job results come back in input order.
 *
 * A batch PostgreSQL refuses because of one element's data is split in halves and each half
 * sent again, down to the single element, which then gets the refusal (and is dead-lettered)
 * while the rest are enqueued. Any other failure is every member's failure, and each retries.
 */

export type BatchItemResult = { readonly id: string } | 'duplicate';

export interface BatchTransport {
  /** Posts the jobs; on success one result per job, in order. */
  postBatch(jobs: readonly EnqueueArgs[]): Promise<RpcResult | readonly BatchItemResult[]>;
}

export interface BatcherOptions {
  readonly maxSize: number;
  readonly lingerMs: number;
  /** Bulk calls in flight at once. */
  readonly concurrency: number;
}

interface Pending {
  readonly args: EnqueueArgs;
  readonly resolve: (result: RpcResult) => void;
}

export class Batcher implements Enqueuer {
  readonly #transport: BatchTransport;
  readonly #options: BatcherOptions;
  readonly #limit: LimitFunction;
  #open: Pending[] = [];
  #timer: NodeJS.Timeout | undefined;

  constructor(transport: BatchTransport, options: BatcherOptions) {
    this.#transport = transport;
    this.#options = options;
    this.#limit = pLimit(options.concurrency);
  }

  enqueue(args: EnqueueArgs): Promise<RpcResult> {
    return new Promise<RpcResult>((resolve) => {
      this.#open.push({ args, resolve });
      if (this.#open.length >= this.#options.maxSize) this.#flush();
      else this.#timer ??= setTimeout(() => this.#flush(), this.#options.lingerMs);
    });
  }

  #flush(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    const batch = this.#open;
    this.#open = [];
    if (batch.length > 0) void this.#limit(() => this.#send(batch));
  }

  async #send(batch: readonly Pending[]): Promise<void> {
    let answer: RpcResult | readonly BatchItemResult[];
    try {
      answer = await this.#transport.postBatch(batch.map((p) => p.args));
    } catch (error) {
      answer = { kind: 'network_error', errno: 'UNKNOWN', message: String(error), requestSent: true };
    }
    if (Array.isArray(answer)) {
      for (const [i, pending] of batch.entries()) {
        pending.resolve(itemResult(answer[i], answer.length, batch.length));
      }
      return;
    }
    const failure = answer as RpcResult;
    const refusedForItsData = classify(failure, { hasDedupeKey: false }).kind === 'rejected_by_rpc';
    if (refusedForItsData && batch.length > 1) {
      const middle = Math.ceil(batch.length / 2);
      await Promise.all([this.#send(batch.slice(0, middle)), this.#send(batch.slice(middle))]);
      return;
    }
    for (const pending of batch) pending.resolve(failure);
  }
}

function itemResult(item: BatchItemResult | undefined, got: number, sent: number): RpcResult {
  if (item === undefined || got !== sent) {
    return {
      kind: 'bad_response',
      status: 200,
      message: `the bulk function returned ${got} results for ${sent} jobs`,
    };
  }
  return item === 'duplicate' ? { kind: 'duplicate' } : { kind: 'enqueued', jobId: item.id };
}
