/** Delays between attempts, shared by every retry loop of the bridge. */

export interface BackoffPolicy {
  readonly initialDelayMs: number;
  readonly maxDelayMs: number;
}

/** Exponential backoff with full jitter: uniform in [0, min(max, initial * 2^attempt)). */
export function backoffDelay(
  attempt: number,
  policy: BackoffPolicy,
  random: () => number = Math.random,
): number {
  const ceiling = Math.min(policy.maxDelayMs, policy.initialDelayMs * 2 ** Math.min(attempt, 30));
  return Math.floor(random() * ceiling);
}

/** The wait before the next try: the jittered backoff, but never sooner than the server asked. */
export function retryDelay(
  attempt: number,
  policy: BackoffPolicy,
  retryAfterMs: number,
  random: () => number = Math.random,
): number {
  return Math.max(backoffDelay(attempt, policy, random), Math.min(retryAfterMs, MAX_RETRY_AFTER_MS));
}

/** A Retry-After beyond this is treated as this: the hold limit still returns the delivery in time. */
export const MAX_RETRY_AFTER_MS = 5 * 60_000;
