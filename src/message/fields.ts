import type { DecodeOptions, IncomingMessage } from './args.ts';
import { describeValue, type InvalidReason, invalid, jsonType } from './invalid.ts';

/**
 * One validator per enqueue argument, shared by envelope and raw mode: each refuses what the
 * SQL function or PostgreSQL itself would refuse, so the refusal names the field instead of
 * coming back as a database error.
 */

export const PG_INT_MIN = -2_147_483_648;
export const PG_INT_MAX = 2_147_483_647;
/** A btree index entry must fit in about a third of a page; stay well inside it. */
export const MAX_DEDUPE_KEY_BYTES = 1024;
export const MAX_ENTRYPOINT_BYTES = 1024;
/** Beyond this depth PostgreSQL's jsonb parser may hit its stack limit; no real header needs it. */
export const MAX_HEADERS_DEPTH = 32;
/** 100 years; longer delays are almost certainly unit mistakes. */
export const MAX_EXECUTE_AFTER_SECONDS = 100 * 365.25 * 24 * 3600;

/** PostgreSQL text cannot hold NUL, and lone surrogates have no UTF-8 encoding. */
export function checkText(reason: InvalidReason, what: string, value: string, maxBytes: number): void {
  if (value.trim() === '') invalid(reason, `${what} must not be empty`);
  if (value.includes('\u0000'))
    invalid(reason, `${what} contains a NUL character, which PostgreSQL text cannot store`);
  if (!value.isWellFormed()) invalid(reason, `${what} contains a lone UTF-16 surrogate (not valid Unicode)`);
  const bytes = Buffer.byteLength(value, 'utf8');
  if (bytes > maxBytes) invalid(reason, `${what} is ${bytes} bytes; the limit is ${maxBytes}`);
}

export function checkPriority(value: unknown, what: string): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < PG_INT_MIN || value > PG_INT_MAX) {
    invalid(
      'invalid_priority',
      `${what} must be an integer from ${PG_INT_MIN} to ${PG_INT_MAX}, got ${describeValue(value)}`,
    );
  }
  return value;
}

export function decodePayload(value: unknown, rawText: () => string): Buffer | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value === 'string') {
    // Node's base64 decoder silently skips bad characters; validate first so garbage is refused.
    if (!isBase64(value)) {
      invalid(
        'invalid_payload',
        'payload string must be base64 (RFC 4648, standard alphabet); send JSON as an object/array, or base64-encode text',
      );
    }
    return Buffer.from(value, 'base64');
  }
  if (typeof value === 'object') return Buffer.from(rawText(), 'utf8');
  invalid(
    'invalid_payload',
    `payload must be a base64 string, a JSON object or array, or null; got ${jsonType(value)}`,
  );
}

/** Standard-alphabet base64, padding optional. Linear: a backtracking regex overflows on MiB-sized input. */
export function isBase64(text: string): boolean {
  const padding = text.endsWith('==') ? 2 : text.endsWith('=') ? 1 : 0;
  const body = text.length - padding;
  if (body % 4 === 1 || (padding > 0 && text.length % 4 !== 0)) return false;
  for (let i = 0; i < body; i++) {
    const c = text.charCodeAt(i);
    const ok =
      (c >= 0x41 && c <= 0x5a) ||
      (c >= 0x61 && c <= 0x7a) ||
      (c >= 0x30 && c <= 0x39) ||
      c === 0x2b ||
      c === 0x2f;
    if (!ok) return false;
  }
  return true;
}

export function decodeExecuteAfter(value: unknown): string {
  if (typeof value === 'number') {
    if (!Number.isFinite(value) || value < 0 || value > MAX_EXECUTE_AFTER_SECONDS) {
      invalid(
        'invalid_execute_after',
        `execute_after in seconds must be from 0 to ${MAX_EXECUTE_AFTER_SECONDS}, got ${describeValue(value)}`,
      );
    }
    // Fixed notation: PostgreSQL's interval input does not read exponents such as 1e-7.
    const seconds = Number.isInteger(value) ? String(value) : value.toFixed(6).replace(/0+$/, '');
    return `${seconds} seconds`;
  }
  if (typeof value === 'string') {
    if (value.trim() === '') invalid('invalid_execute_after', 'execute_after must not be empty');
    // The syntax is PostgreSQL's to judge (it accepts many forms); a bad one comes back as 22007.
    checkText('invalid_execute_after', 'execute_after', value, 100);
    return value;
  }
  invalid(
    'invalid_execute_after',
    `execute_after must be seconds (a number) or interval text such as "10 seconds" or "PT10S", got ${jsonType(value)}`,
  );
}

export function decodeDedupeKey(
  value: unknown,
  message: IncomingMessage,
  options: DecodeOptions,
): string | undefined {
  if (value !== undefined && value !== null) {
    if (typeof value !== 'string') {
      invalid('invalid_dedupe_key', `dedupe_key must be a string or null, got ${jsonType(value)}`);
    }
    checkText('invalid_dedupe_key', 'dedupe_key', value, MAX_DEDUPE_KEY_BYTES);
    return value;
  }
  const messageId = message.properties.messageId;
  if (options.dedupeKeyFromMessageId && typeof messageId === 'string' && messageId !== '') {
    checkText(
      'invalid_dedupe_key',
      'the AMQP message-id (used as dedupe_key)',
      messageId,
      MAX_DEDUPE_KEY_BYTES,
    );
    return messageId;
  }
  return undefined;
}

export function checkHeaders(value: unknown): void {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    invalid('invalid_headers', `headers must be a JSON object or null, got ${jsonType(value)}`);
  }
  const problem = findJsonbProblem(value, 1);
  if (problem !== undefined) invalid('invalid_headers', `headers ${problem}`);
}

/** The first thing in a JSON value that PostgreSQL's jsonb would refuse, if any. */
function findJsonbProblem(value: unknown, depth: number): string | undefined {
  if (typeof value === 'string') return stringProblem(value);
  if (typeof value !== 'object' || value === null) return undefined;
  if (depth > MAX_HEADERS_DEPTH) return `are nested deeper than ${MAX_HEADERS_DEPTH} levels`;
  if (Array.isArray(value)) {
    for (const item of value) {
      const problem = findJsonbProblem(item, depth + 1);
      if (problem !== undefined) return problem;
    }
    return undefined;
  }
  for (const [key, item] of Object.entries(value)) {
    const keyProblem = stringProblem(key);
    if (keyProblem !== undefined) return `key ${JSON.stringify(key)}: ${keyProblem}`;
    const problem = findJsonbProblem(item, depth + 1);
    if (problem !== undefined) return problem;
  }
  return undefined;
}

function stringProblem(value: string): string | undefined {
  if (value.includes('\u0000')) return 'contain a NUL character (\\u0000), which jsonb cannot store';
  if (!value.isWellFormed()) return 'contain a lone UTF-16 surrogate (not valid Unicode)';
  return undefined;
}

const TRACE_HEADERS = ['traceparent', 'tracestate', 'baggage'] as const;

/**
 * Copies the message's W3C trace context (AMQP headers traceparent, tracestate, baggage) into
 * the job's `headers.otel`, where PGQueuer's OpenTelemetry integration reads it, so a trace
 * continues from the publisher into the job. The publisher's own headers are kept as written;
 * an `otel` key they already have wins (the caller checks).
 */
export function withTraceContext(
  headersJson: string | undefined,
  amqpHeaders: Readonly<Record<string, unknown>> | undefined,
): string | undefined {
  if (amqpHeaders === undefined) return headersJson;
  const otel: Record<string, string> = {};
  for (const name of TRACE_HEADERS) {
    const value = amqpHeaders[name];
    const text = Buffer.isBuffer(value) ? value.toString('utf8') : value;
    // Trace context is ASCII by spec; anything else is dropped rather than stored.
    if (typeof text === 'string' && text !== '' && /^[\x20-\x7e]*$/.test(text)) otel[name] = text;
  }
  if (otel.traceparent === undefined) return headersJson;
  const otelJson = `"otel":${JSON.stringify(otel)}`;
  if (headersJson === undefined) return `{${otelJson}}`;
  const inner = headersJson.trim().slice(1).trimStart();
  return inner.startsWith('}') ? `{${otelJson}}` : `{${otelJson},${inner}`;
}
