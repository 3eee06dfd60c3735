import { z } from 'zod';
import { delayMs, identifier } from './kinds.ts';

/**
 * The sections about handling deliveries: `retry` (transient failures), `batch` (bulk calls),
 * `policy` (what may be enqueued) and `intake` (how many bytes are held).
 */

export const DEFAULT_BATCH_MAX_SIZE = 100;

export const retrySchema = z
  .strictObject({
    initialDelayMs: delayMs('First retry delay after a transient failure (exponential, full jitter).', 200),
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
  .describe('Retry policy.');

export const batchSchema = z
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
  .describe('Batch mode. Each source then has `concurrency` bulk calls in flight.');

export const policySchema = z
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
      .describe('Largest job headers (JSON text) accepted; larger are dead-lettered (headers_too_large).'),
    maxJobsPerSecond: z
      .number()
      .positive()
      .optional()
      .describe('Rate limit on enqueue calls across the process. Absent: unlimited.'),
  })
  .prefault({})
  .describe('Limits on what may be enqueued.');

export const intakeSchema = z
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
  .describe('Memory bounds of intake.');
