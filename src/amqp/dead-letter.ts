import type { Options } from 'amqplib';
import type { DeadLetterReason, MessageAttributes } from '../pipeline/delivery.ts';
import { fieldTableSize, fieldValueSize, MAX_HEADERS_BYTES } from './header-size.ts';

export type { DeadLetterReason } from '../pipeline/delivery.ts';

/**
 * The dead letter: the original body and properties, plus headers that say why, so an operator
 * can read the reason, fix the cause and re-publish the message to its source queue unchanged.
 *
 * Every message must be dead-letterable. What the bridge adds is bounded (each text at most
 * MAX_TEXT characters, so a few KiB in all); when the original headers and the bridge's do not
 * fit the frame limit together, the largest original headers are dropped, and
 * `x-pgq-bridge-dropped-headers` names them. The body and the reason are always kept.
 */

export interface DeadLetterSource {
  readonly content: Buffer;
  readonly properties: MessageAttributes;
  readonly fields: { readonly exchange: string; readonly routingKey: string; readonly redelivered: boolean };
}

export const HEADER_PREFIX = 'x-pgq-bridge-';
export const DROPPED_HEADERS = `${HEADER_PREFIX}dropped-headers`;
/** Per text header: at most 4 bytes a character, so the bridge's headers stay a few KiB. */
const MAX_TEXT = 1024;

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
  keepOriginalHeaders = true,
): { readonly content: Buffer; readonly options: Options.Publish; readonly dropped: readonly string[] } {
  const p = source.properties;
  const ours = deadLetterHeaders(reason, sourceQueue, source, at);
  const { headers, dropped } = fitHeaders(keepOriginalHeaders ? (p.headers ?? {}) : {}, ours);
  const options: Options.Publish = {
    // Persistent whatever the original was: the dead-letter queue is where nothing may vanish.
    persistent: true,
    headers,
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
  if (!keepOriginalHeaders && p.headers !== undefined) {
    const all = Object.keys(p.headers).filter((key) => !(key in ours));
    options.headers = { ...ours, [DROPPED_HEADERS]: truncate(all.join(',')) };
    return { content: source.content, options, dropped: all };
  }
  return { content: source.content, options, dropped };
}

/** The original headers with the bridge's, dropping the largest originals until they fit. */
function fitHeaders(
  original: Readonly<Record<string, unknown>>,
  ours: Readonly<Record<string, unknown>>,
): { readonly headers: Record<string, unknown>; readonly dropped: readonly string[] } {
  const headers: Record<string, unknown> = { ...original, ...ours };
  if (fieldTableSize(headers) <= MAX_HEADERS_BYTES) return { headers, dropped: [] };
  const bySize = Object.keys(original)
    .filter((key) => !(key in ours))
    .map((key) => ({ key, size: Buffer.byteLength(key) + fieldValueSize(original[key]) }))
    .sort((a, b) => b.size - a.size);
  const dropped: string[] = [];
  // Room for the list of what was dropped, itself a bounded text.
  const budget = MAX_HEADERS_BYTES - (MAX_TEXT * 4 + 64);
  let size = fieldTableSize(headers);
  for (const { key, size: entry } of bySize) {
    if (size <= budget) break;
    delete headers[key];
    dropped.push(key);
    size -= entry + 1;
  }
  headers[DROPPED_HEADERS] = truncate(dropped.join(','));
  return { headers, dropped };
}

function truncate(text: string): string {
  if (text.length <= MAX_TEXT) return text;
  // Never cut a surrogate pair in half: a lone surrogate is not valid Unicode.
  const high = text.charCodeAt(MAX_TEXT - 1);
  const end = high >= 0xd800 && high <= 0xdbff ? MAX_TEXT - 1 : MAX_TEXT;
  return `${text.slice(0, end)}…`;
}
