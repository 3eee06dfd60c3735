import type { MessageProperties, Options } from 'amqplib';
import type { DeadLetterKind } from '../metrics.ts';

/**
 * The dead letter: the original body and properties, plus headers that say why, so an operator
 * can read the reason, fix the cause and re-publish the message to its source queue unchanged.
 */

export interface DeadLetterReason {
  readonly kind: DeadLetterKind;
  /** Machine-readable: an InvalidReason, a PostgREST/SQLSTATE code, or `repeated_failure`. */
  readonly reason: string;
  readonly message: string;
  readonly httpStatus?: number | undefined;
  readonly postgrestCode?: string | null | undefined;
  readonly details?: string | null | undefined;
  readonly hint?: string | null | undefined;
}

export interface DeadLetterSource {
  readonly content: Buffer;
  readonly properties: MessageProperties;
  readonly fields: { readonly exchange: string; readonly routingKey: string; readonly redelivered: boolean };
}

export const HEADER_PREFIX = 'x-pgq-bridge-';
/** Keeps the header table far below amqplib's 64 KiB limit even with long PostgreSQL details. */
const MAX_TEXT = 2048;

export function deadLetterHeaders(
  reason: DeadLetterReason,
  sourceQueue: string,
  source: DeadLetterSource,
  at: Date,
): Record<string, string | number | boolean> {
  const headers: Record<string, string | number | boolean> = {
    [`${HEADER_PREFIX}error-kind`]: reason.kind,
    [`${HEADER_PREFIX}error-reason`]: reason.reason,
    [`${HEADER_PREFIX}error-message`]: truncate(reason.message),
    [`${HEADER_PREFIX}source-queue`]: sourceQueue,
    [`${HEADER_PREFIX}original-exchange`]: source.fields.exchange,
    [`${HEADER_PREFIX}original-routing-key`]: source.fields.routingKey,
    [`${HEADER_PREFIX}redelivered`]: source.fields.redelivered,
    [`${HEADER_PREFIX}failed-at`]: at.toISOString(),
  };
  if (reason.httpStatus !== undefined) headers[`${HEADER_PREFIX}http-status`] = reason.httpStatus;
  if (typeof reason.postgrestCode === 'string')
    headers[`${HEADER_PREFIX}postgrest-code`] = reason.postgrestCode;
  if (typeof reason.details === 'string')
    headers[`${HEADER_PREFIX}postgrest-details`] = truncate(reason.details);
  if (typeof reason.hint === 'string') headers[`${HEADER_PREFIX}postgrest-hint`] = truncate(reason.hint);
  return headers;
}

export function buildDeadLetter(
  source: DeadLetterSource,
  sourceQueue: string,
  reason: DeadLetterReason,
  at: Date,
): { readonly content: Buffer; readonly options: Options.Publish } {
  const p = source.properties;
  const options: Options.Publish = {
    // Persistent whatever the original was: the dead-letter queue is where nothing may vanish.
    persistent: true,
    headers: { ...(p.headers ?? {}), ...deadLetterHeaders(reason, sourceQueue, source, at) },
  };
  // Expiration is dropped (a dead letter must not expire) and userId too (the broker refuses a
  // user-id that is not the publishing connection's user).
  if (p.contentType !== undefined) options.contentType = p.contentType;
  if (p.contentEncoding !== undefined) options.contentEncoding = p.contentEncoding;
  if (p.priority !== undefined) options.priority = p.priority;
  if (p.correlationId !== undefined) options.correlationId = p.correlationId;
  if (p.replyTo !== undefined) options.replyTo = p.replyTo;
  if (p.messageId !== undefined) options.messageId = p.messageId;
  if (p.timestamp !== undefined) options.timestamp = p.timestamp;
  if (p.type !== undefined) options.type = p.type;
  if (p.appId !== undefined) options.appId = p.appId;
  return { content: source.content, options };
}

function truncate(text: string): string {
  if (text.length <= MAX_TEXT) return text;
  // Never cut a surrogate pair in half: a lone surrogate is not valid Unicode.
  const high = text.charCodeAt(MAX_TEXT - 1);
  const end = high >= 0xd800 && high <= 0xdbff ? MAX_TEXT - 1 : MAX_TEXT;
  return `${text.slice(0, end)}…`;
}
