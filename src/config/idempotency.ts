import { z } from 'zod';

/**
 * Exactly one job per message (sql/install-ledger.sql): a source with `idempotency` calls the
 * `_once` variants of the enqueue functions with the message's identity, and a redelivery is
 * answered with the first job's id instead of making a second job.
 */

/** Where the identity is read: the AMQP message-id property, a header, or a top-level body field. */
export type IdentitySource =
  | { readonly from: 'message-id' }
  | { readonly from: 'header'; readonly name: string }
  | { readonly from: 'field'; readonly name: string };

function parseIdentitySource(text: string): IdentitySource {
  if (text.startsWith('header:')) return { from: 'header', name: text.slice('header:'.length) };
  if (text.startsWith('field:')) return { from: 'field', name: text.slice('field:'.length) };
  return { from: 'message-id' };
}

export const idempotencySchema = z
  .strictObject({
    messageId: z
      .string()
      .regex(/^(message-id|header:.+|field:.+)$/, 'must be message-id, header:<name> or field:<name>')
      .default('message-id')
      .transform(parseIdentitySource)
      .describe(
        'Where the message identity comes from: `message-id` (the AMQP property), `header:<name>`, or `field:<name>` (a top-level string field of the JSON body; in envelope mode that field is then allowed).',
      ),
    whenMissing: z
      .enum(['enqueue', 'dead_letter'])
      .default('enqueue')
      .describe(
        'A message without an identity: `enqueue` it at least once (the plain function, no ledger entry), or `dead_letter` it as missing_message_id.',
      ),
  })
  .describe(
    'Exactly one job per message identity within the ledger retention: calls `<function>_once` and `<batch.function>_once` (sql/install-ledger.sql). Unset: at least once.',
  );

export type IdempotencyConfig = z.output<typeof idempotencySchema>;

/** The ledger's upkeep, when no pg_cron job does it: the bridge calls prepare and prune itself. */
export const ledgerSchema = z
  .strictObject({
    maintenanceIntervalMs: z
      .number()
      .int()
      .min(60_000)
      .max(24 * 3600 * 1000)
      .optional()
      .describe(
        'Call fn_<table>_prepare and fn_<table>_prune through PostgREST at start and then this often. Absent: never (schedule them with pg_cron instead).',
      ),
    table: z
      .string()
      .regex(/^[A-Za-z_][A-Za-z0-9_$]*$/, 'must be a plain SQL identifier')
      .default('pgqueuer_ledger')
      .describe('The ledger_table of sql/install-ledger.sql, which names the maintenance functions.'),
  })
  .prefault({})
  .describe('Upkeep of the idempotency ledger (sql/install-ledger.sql).');

export type LedgerConfig = z.output<typeof ledgerSchema>;

/**
 * The ledger's variants of the configured functions, named as sql/install-ledger.sql names them,
 * when any source uses them.
 */
export function onceFunctions(config: {
  readonly sources: readonly { readonly idempotency?: IdempotencyConfig | undefined }[];
  readonly postgrest: { readonly function: string };
  readonly batch: { readonly enabled: boolean; readonly function: string };
}): { readonly onceFunction?: string; readonly batchOnceFunction?: string } {
  if (!config.sources.some((source) => source.idempotency !== undefined)) return {};
  const onceFunction = `${config.postgrest.function}_once`;
  return config.batch.enabled
    ? { onceFunction, batchOnceFunction: `${config.batch.function}_once` }
    : { onceFunction };
}
