import { z } from 'zod';
import { amqpSchema } from './amqp-schema.ts';
import { batchSchema, intakeSchema, policySchema, retrySchema } from './delivery-schema.ts';
import { ledgerSchema } from './idempotency.ts';
import { postgrestSchema } from './postgrest-schema.ts';
import { sourceSchema } from './source-schema.ts';

/**
 * The whole config file's schema, one section per key; the larger sections live in their own
 * modules. Descriptions here are what `npm run docs:config` prints.
 */

const durationMs = (description: string, defaultValue: number) =>
  z.number().int().min(0).default(defaultValue).describe(description);

export const configSchema = z
  .strictObject({
    amqp: amqpSchema,
    postgrest: postgrestSchema,
    concurrency: z
      .number()
      .int()
      .min(1)
      .max(1000)
      .default(10)
      .describe("Default RPC calls in flight per source; keep the sum at or below PostgREST's db-pool (10)."),
    sources: z.array(sourceSchema).min(1).describe('Queues to consume.'),
    retry: retrySchema,
    batch: batchSchema,
    policy: policySchema,
    intake: intakeSchema,
    ledger: ledgerSchema,
    shutdown: z
      .strictObject({
        graceMs: durationMs('On SIGTERM/SIGINT, how long in-flight deliveries may take to finish.', 20_000),
      })
      .prefault({})
      .describe('Graceful shutdown.'),
    http: z
      .strictObject({
        enabled: z.boolean().default(true).describe('Serve /healthz, /readyz and /metrics.'),
        host: z.string().default('0.0.0.0').describe('Listen address.'),
        port: z
          .number()
          .int()
          .min(0)
          .max(65535)
          .default(9464)
          .describe('Listen port. Env: PGQ_BRIDGE_HTTP_PORT.'),
      })
      .prefault({})
      .describe('Health and metrics endpoint.'),
    log: z
      .strictObject({
        level: z
          .enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'])
          .default('info')
          .describe('Log level. Env: PGQ_BRIDGE_LOG_LEVEL.'),
      })
      .prefault({})
      .describe('Logging.'),
  })
  .superRefine((config, ctx) => {
    const seen = new Set<string>();
    config.sources.forEach((source, index) => {
      if (seen.has(source.queue)) {
        ctx.addIssue({ code: 'custom', path: ['sources', index, 'queue'], message: 'queue listed twice' });
      }
      seen.add(source.queue);
    });
  });
