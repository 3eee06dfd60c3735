import pLimit, { type LimitFunction } from 'p-limit';
import type { EnqueueArgs } from '../message/args.ts';
import { classify, type Outcome } from './classify.ts';
import type { BatchItemResult, RpcResult } from './client.ts';
import { type Attempt, type Enqueuer, NOT_SENT } from './enqueuer.ts';
import { bulkBody, bulkBodyBytes, type JobBody, jobBody } from './request-body.ts';

/**
 * Batch mode as an Enqueuer: each delivery still asks for its own job and gets its own answer,
 * so retries, the circuit, dead letters and acks work exactly as in single mode. Underneath,
 * calls that arrive together are grouped (up to the batch size and `maxBytes` of request body,
 * waiting at most `lingerMs` for more) into one call of the bulk function, whose per-job results
 * come back in input order.
 *
 * - A member whose delivery is gone by the time its batch is sent is left out (NOT_SENT).
 * - A batch PostgreSQL refuses because of one element's data, or whose body cannot be built, is
 *   split in halves and each half sent again, down to the single element, which then gets the
 *   refusal (and is dead-lettered) while the rest are enqueued.
 * - An ambiguous failure (sent, no answer: the jobs may exist) halves the batch size, so the
 *   retries that follow repeat fewer jobs each time; successes grow it back.
 * - Any other failure is every member's failure, and each retries.
 */
export interface BatchTransport {
  /** Posts a bulk body (`bulkBody`); on success one result per job, in order. */
  postBatch(body: Buffer): Promise<RpcResult | readonly BatchItemResult[]>;
}

export interface BatcherOptions {
  readonly maxSize: number;
  readonly lingerMs: number;
  /** Bulk calls in flight at once. */
  readonly concurrency: number;
  /** Largest request body of one call. */
  readonly maxBytes: number;
}

interface Member {
  readonly job: JobBody;
  readonly sendable: () => boolean;
  readonly resolve: (attempt: Attempt | typeof NOT_SENT) => void;
}

/** A bulk call's own failure is never a dedupe hit: the function reports those per job. */
const BULK_CONTEXT = { hasDedupeKey: false, dedupeConstraint: undefined } as const;

export class Batcher implements Enqueuer {
  readonly #transport: BatchTransport;
  readonly #options: BatcherOptions;
  readonly #limit: LimitFunction;
  #open: Member[] = [];
  #openBytes = 0;
  #timer: NodeJS.Timeout | undefined;
  /** The current batch size: halved after an ambiguous failure, doubled after a success. */
  #size: number;

  constructor(transport: BatchTransport, options: BatcherOptions) {
    this.#transport = transport;
    this.#options = options;
    this.#limit = pLimit(options.concurrency);
    this.#size = options.maxSize;
  }

  /** The batch size the next call will use. */
  get size(): number {
    return this.#size;
  }

  enqueue(args: EnqueueArgs, sendable: () => boolean): Promise<Attempt | typeof NOT_SENT> {
    return new Promise((resolve) => {
      const job = jobBody(args);
      // Would this member push the open batch past its byte limit? Then the batch goes first.
      if (this.#open.length > 0 && this.#openBytes + job.bytes + 1 > this.#byteBudget()) this.#flush();
      this.#open.push({ job, sendable, resolve });
      this.#openBytes += job.bytes + 1;
      if (this.#open.length >= this.#size || this.#openBytes >= this.#byteBudget()) this.#flush();
      else this.#timer ??= setTimeout(() => this.#flush(), this.#options.lingerMs);
    });
  }

  #byteBudget(): number {
    return this.#options.maxBytes - bulkBodyBytes(0, 0);
  }

  #flush(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    const batch = this.#open;
    this.#open = [];
    this.#openBytes = 0;
    if (batch.length > 0) void this.#limit(() => this.#send(batch));
  }

  async #send(members: readonly Member[]): Promise<void> {
    // Checked as late as possible: the batch may have waited for a free call slot.
    const batch = members.filter((member) => {
      if (member.sendable()) return true;
      member.resolve(NOT_SENT);
      return false;
    });
    if (batch.length === 0) return;
    let answer: RpcResult | readonly BatchItemResult[];
    try {
      answer = await this.#post(batch);
    } catch (error) {
      answer = { kind: 'network_error', errno: 'UNKNOWN', message: String(error), requestSent: true };
    }
    if (Array.isArray(answer)) {
      this.#size = Math.min(this.#options.maxSize, this.#size * 2);
      for (const [i, member] of batch.entries()) {
        member.resolve(itemAttempt(answer[i], answer.length, batch.length));
      }
      return;
    }
    const failure = answer as RpcResult;
    const outcome = classify(failure, BULK_CONTEXT);
    if (outcome.kind === 'rejected_by_rpc' && batch.length > 1) {
      const middle = Math.ceil(batch.length / 2);
      await Promise.all([this.#send(batch.slice(0, middle)), this.#send(batch.slice(middle))]);
      return;
    }
    if (outcome.kind === 'transient' && outcome.ambiguous) {
      this.#size = Math.max(1, Math.min(this.#size, Math.floor(batch.length / 2)));
    }
    for (const member of batch) member.resolve({ outcome, result: failure });
  }

  /** The body lives only as long as this call: nothing else holds the members' encoded bytes. */
  #post(batch: readonly Member[]): Promise<RpcResult | readonly BatchItemResult[]> {
    let body: Buffer;
    try {
      body = bulkBody(batch.map((member) => member.job));
    } catch (error) {
      // No memory for a buffer this large: this body can never be built, so it must be split.
      return Promise.resolve({ kind: 'body_too_large', message: String(error) });
    }
    return this.#transport.postBatch(body);
  }
}

function itemAttempt(item: BatchItemResult | undefined, got: number, sent: number): Attempt {
  if (item === undefined || got !== sent) {
    const result: RpcResult = {
      kind: 'bad_response',
      status: 200,
      message: `the bulk function returned ${got} results for ${sent} jobs`,
    };
    return { outcome: classify(result, BULK_CONTEXT), result };
  }
  if (item === 'duplicate') return { outcome: DUPLICATE, result: { kind: 'duplicate' } };
  const result: RpcResult =
    item.replayed === true
      ? { kind: 'enqueued', jobId: item.id, replayed: true }
      : { kind: 'enqueued', jobId: item.id };
  return { outcome: classify(result, BULK_CONTEXT), result };
}

const DUPLICATE: Outcome = { kind: 'duplicate' };
