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
