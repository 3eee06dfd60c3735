import type { EnqueueArgs } from '../message/args.ts';
import { classify, type Outcome } from './classify.ts';
import type { RpcResult } from './client.ts';

/**
 * What the pipeline asks of the PostgREST side: one job per delivery, answered with what came
 * back and what it means. Single and batch mode both implement it.
 */

export interface Attempt {
  readonly outcome: Outcome;
  /** What the endpoint answered, for logs and dead-letter headers. */
  readonly result: RpcResult;
}

/** The delivery was no longer live (or the bridge was draining) when its turn to be sent came. */
export const NOT_SENT = 'not_sent';

export interface Enqueuer {
  /**
   * `sendable` is asked right before the request goes out: a delivery whose channel closed
   * while it waited (for the rate limiter, for a batch to fill) would only make a duplicate.
   */
  enqueue(args: EnqueueArgs, sendable: () => boolean): Promise<Attempt | typeof NOT_SENT>;
}

/** One call per job. */
export function singleEnqueuer(
  call: (args: EnqueueArgs) => Promise<RpcResult>,
  dedupeConstraint: string,
): Enqueuer {
  return {
    async enqueue(args, sendable) {
      if (!sendable()) return NOT_SENT;
      const result = await call(args);
      const outcome = classify(result, { hasDedupeKey: args.dedupeKey !== undefined, dedupeConstraint });
      return { outcome, result };
    },
  };
}
