import type { SourceConfig } from '../config/config.ts';

/** What decoding reads (a delivery, the source's settings) and what it produces (the enqueue arguments). */

/** The six arguments; an absent optional one takes the function's SQL DEFAULT. */
export interface EnqueueArgs {
  readonly entrypoint: string;
  /** Exact bytes of the job payload. */
  readonly payload?: Buffer;
  readonly priority?: number;
  /** PostgreSQL interval text, e.g. "10 seconds" or "PT10S". */
  readonly executeAfter?: string;
  readonly dedupeKey?: string;
  /** JSON text of an object, forwarded unchanged. */
  readonly headersJson?: string;
  /** The message's identity for the idempotency ledger (see identity.ts). */
  readonly messageId?: string;
}

/** The parts of an AMQP delivery that decoding looks at. */
export interface IncomingMessage {
  readonly body: Buffer;
  readonly properties: {
    readonly contentType?: string | undefined;
    readonly contentEncoding?: string | undefined;
    readonly headers?: Readonly<Record<string, unknown>> | undefined;
    readonly messageId?: string | undefined;
    readonly priority?: number | undefined;
  };
}

export type DecodeOptions = Pick<
  SourceConfig,
  'mode' | 'entrypoint' | 'entrypointHeader' | 'dedupeKeyFromMessageId' | 'idempotency'
>;

// Only defined fields are set, so "absent" reaches the RPC as "use the SQL default".
export function buildArgs(
  entrypoint: string,
  payload: Buffer | undefined,
  priority: number | undefined,
  executeAfter: string | undefined,
  dedupeKey: string | undefined,
  headersJson: string | undefined,
): EnqueueArgs {
  // Assigned one by one: spreading conditional objects would allocate one per field per message.
  const args: { -readonly [K in keyof EnqueueArgs]: EnqueueArgs[K] } = { entrypoint };
  if (payload !== undefined) args.payload = payload;
  if (priority !== undefined) args.priority = priority;
  if (executeAfter !== undefined) args.executeAfter = executeAfter;
  if (dedupeKey !== undefined) args.dedupeKey = dedupeKey;
  if (headersJson !== undefined) args.headersJson = headersJson;
  return args;
}
