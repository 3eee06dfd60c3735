import { z } from 'zod';
import { idempotencySchema } from './idempotency.ts';

/** One entry of `sources`: a queue to consume, how its messages read, where its dead letters go. */

/**
 * A source's prefetch unless configured. Single mode: three deliveries per call in flight, so a
 * call that returns finds its next message waiting instead of waiting a broker round trip, and
 * acks can wait to share a frame (see amqp/acks.ts) without leaving a call idle. Batch mode:
 * every bulk call in flight needs a full batch of deliveries to draw from.
 */
export function defaultPrefetch(
  concurrency: number,
  batch: { readonly enabled: boolean; readonly maxSize: number },
): number {
  return concurrency * (batch.enabled ? batch.maxSize : 3);
}

export const sourceSchema = z
  .strictObject({
    queue: z.string().min(1).max(255).describe('Queue to consume from.'),
    mode: z
      .enum(['envelope', 'raw'])
      .default('envelope')
      .describe(
        '`envelope`: the body is a JSON object with the enqueue arguments. `raw`: the body is the payload.',
      ),
    concurrency: z
      .number()
      .int()
      .min(1)
      .max(1000)
      .optional()
      .describe('RPC calls in flight for this source. Default: top-level `concurrency`.'),
    prefetch: z
      .number()
      .int()
      .min(1)
      .max(65535)
      .optional()
      .describe(
        'AMQP prefetch for this source; at least its concurrency. Default: 3 × its concurrency (batch mode: concurrency × batch.maxSize).',
      ),
    deadLetterQueue: z
      .string()
      .min(1)
      .max(255)
      .optional()
      .describe('Queue that receives messages that can never succeed. Default: `<queue>.dead`.'),
    declare: z
      .boolean()
      .default(true)
      .describe('Declare the source queue (durable) at start; when false it must already exist.'),
    queueArguments: z
      .record(z.string(), z.union([z.string(), z.number(), z.boolean()]))
      .default({})
      .describe('Arguments for declaring the source queue, e.g. {"x-queue-type": "quorum"}.'),
    deadLetterQueueArguments: z
      .record(z.string(), z.union([z.string(), z.number(), z.boolean()]))
      .default({})
      .describe(
        'Arguments for declaring the dead-letter queue; must match a pre-declared one, e.g. {"x-queue-type": "quorum"}.',
      ),
    entrypoint: z
      .string()
      .min(1)
      .optional()
      .describe(
        'raw mode: the entrypoint of every job from this queue (fallback when the header is absent).',
      ),
    entrypointHeader: z
      .string()
      .min(1)
      .optional()
      .describe('raw mode: AMQP header that carries the entrypoint.'),
    dedupeKeyFromMessageId: z
      .boolean()
      .default(false)
      .describe(
        'Use the AMQP message-id as dedupe_key when the message has none (makes redelivery idempotent).',
      ),
    idempotency: idempotencySchema.optional(),
  })
  .superRefine((source, ctx) => {
    if (source.mode === 'raw' && source.entrypoint === undefined && source.entrypointHeader === undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['entrypoint'],
        message: 'raw mode needs entrypoint or entrypointHeader',
      });
    }
    if (source.mode === 'envelope') {
      for (const key of ['entrypoint', 'entrypointHeader'] as const) {
        if (source[key] !== undefined) {
          ctx.addIssue({
            code: 'custom',
            path: [key],
            message: 'only valid in raw mode (envelopes carry it)',
          });
        }
      }
    }
  });
