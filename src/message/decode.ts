import { isUtf8 } from 'node:buffer';
import type { SourceConfig } from '../config/config.ts';
import { BridgeError } from '../errors.ts';
import { topLevelSpans } from './json-span.ts';

/**
 * Turns a delivery into the arguments of fn_pgqueuer_enqueue, or says precisely why it cannot.
 * Pure: no I/O, no clock, so every rule is a unit test.
 *
 * Anything decided here is final for the message: a rejection is dead-lettered at once, because
 * the same bytes will fail the same way on every redelivery.
 */

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

export type InvalidReason =
  | 'empty_body'
  | 'invalid_utf8'
  | 'invalid_json'
  | 'not_an_object'
  | 'unknown_field'
  | 'unsupported_content_type'
  | 'unsupported_content_encoding'
  | 'missing_entrypoint'
  | 'invalid_entrypoint'
  | 'invalid_payload'
  | 'invalid_priority'
  | 'invalid_execute_after'
  | 'invalid_dedupe_key'
  | 'invalid_headers'
  | 'entrypoint_not_allowed'
  | 'payload_too_large'
  | 'headers_too_large'
  | 'missing_message_id'
  | 'invalid_message_id';

export class InvalidMessageError extends BridgeError {
  readonly reason: InvalidReason;

  constructor(reason: InvalidReason, message: string) {
    super('invalid_message', message);
    this.reason = reason;
    this.name = 'InvalidMessageError';
  }
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

export type DecodeResult =
  | { readonly ok: true; readonly args: EnqueueArgs }
  | { readonly ok: false; readonly error: InvalidMessageError };

export type DecodeOptions = Pick<
  SourceConfig,
  'mode' | 'entrypoint' | 'entrypointHeader' | 'dedupeKeyFromMessageId' | 'idempotency'
>;

export const PG_INT_MIN = -2_147_483_648;
export const PG_INT_MAX = 2_147_483_647;
/** A btree index entry must fit in about a third of a page; stay well inside it. */
export const MAX_DEDUPE_KEY_BYTES = 1024;
export const MAX_ENTRYPOINT_BYTES = 1024;
/** Beyond this depth PostgreSQL's jsonb parser may hit its stack limit; no real header needs it. */
export const MAX_HEADERS_DEPTH = 32;
/** 100 years; longer delays are almost certainly unit mistakes. */
export const MAX_EXECUTE_AFTER_SECONDS = 100 * 365.25 * 24 * 3600;

const ENVELOPE_FIELDS = new Set([
  'entrypoint',
  'payload',
  'priority',
  'execute_after',
  'dedupe_key',
  'headers',
]);
const utf8 = new TextDecoder('utf-8', { fatal: true });

export function decodeMessage(message: IncomingMessage, options: DecodeOptions): DecodeResult {
  try {
    const args = options.mode === 'raw' ? decodeRaw(message, options) : decodeEnvelope(message, options);
    return { ok: true, args };
  } catch (error) {
    if (error instanceof InvalidMessageError) return { ok: false, error };
    throw error;
  }
}

export function invalid(reason: InvalidReason, message: string): never {
  throw new InvalidMessageError(reason, message);
}

function decodeEnvelope(message: IncomingMessage, options: DecodeOptions): EnqueueArgs {
  checkContentType(message.properties.contentType);
  checkContentEncoding(message.properties.contentEncoding);
  if (message.body.length === 0) invalid('empty_body', 'the message body is empty; expected a JSON object');

  if (!isUtf8(message.body)) invalid('invalid_utf8', 'the message body is not valid UTF-8');
  // A leading byte order mark is not part of the JSON text (TextDecoder drops it too).
  const bom = message.body[0] === 0xef && message.body[1] === 0xbb && message.body[2] === 0xbf ? 3 : 0;
  const text = message.body.toString('utf8', bom);
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    invalid('invalid_json', `the message body is not valid JSON: ${(error as Error).message}`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    invalid('not_an_object', `the message body must be a JSON object, got ${jsonType(parsed)}`);
  }
  const fields = parsed as Record<string, unknown>;
  // The field that carries the message's identity, when the source reads it from the body.
  const identity = options.idempotency?.messageId;
  const identityField = identity?.from === 'field' ? identity.name : undefined;
  for (const key in fields) {
    if (!ENVELOPE_FIELDS.has(key) && key !== identityField) rejectUnknownFields(fields, identityField);
  }

  // Only payload objects and headers need their source text, so most messages skip the scan.
  let spans: ReturnType<typeof topLevelSpans> | undefined;
  const rawText = (key: string): string => {
    spans ??= topLevelSpans(text);
    const span = spans.get(key);
    return span === undefined ? '' : text.slice(span[0], span[1]);
  };

  const entrypoint = fields.entrypoint;
  if (entrypoint === undefined || entrypoint === null)
    invalid('missing_entrypoint', 'entrypoint is required');
  if (typeof entrypoint !== 'string') {
    invalid('invalid_entrypoint', `entrypoint must be a string, got ${jsonType(entrypoint)}`);
  }
  checkText('invalid_entrypoint', 'entrypoint', entrypoint, MAX_ENTRYPOINT_BYTES);

  const payload = decodePayload(fields.payload, () => rawText('payload'));
  const priority = fields.priority === undefined ? undefined : checkPriority(fields.priority, 'priority');
  const executeAfter =
    fields.execute_after === undefined ? undefined : decodeExecuteAfter(fields.execute_after);
  const dedupeKey = decodeDedupeKey(fields.dedupe_key, message, options);

  let headersJson: string | undefined;
  if (fields.headers !== undefined && fields.headers !== null) {
    checkHeaders(fields.headers);
    headersJson = rawText('headers');
  }
  const userHasOtel =
    typeof fields.headers === 'object' && fields.headers !== null && 'otel' in fields.headers;
  if (!userHasOtel) headersJson = withTraceContext(headersJson, message.properties.headers);

  return build(entrypoint, payload, priority, executeAfter, dedupeKey, headersJson);
}

function rejectUnknownFields(fields: Record<string, unknown>, identityField: string | undefined): never {
  const unknown = Object.keys(fields).filter((key) => !ENVELOPE_FIELDS.has(key) && key !== identityField);
  invalid(
    'unknown_field',
    `unknown field${unknown.length > 1 ? 's' : ''} ${unknown.map((k) => JSON.stringify(k)).join(', ')}; ` +
      `allowed: entrypoint, payload, priority, execute_after, dedupe_key, headers${identityField === undefined ? '' : `, ${identityField}`}`,
  );
}

function decodeRaw(message: IncomingMessage, options: DecodeOptions): EnqueueArgs {
  let entrypoint = options.entrypoint;
  if (options.entrypointHeader !== undefined) {
    const fromHeader = message.properties.headers?.[options.entrypointHeader];
    if (typeof fromHeader === 'string') entrypoint = fromHeader;
    else if (Buffer.isBuffer(fromHeader)) {
      try {
        entrypoint = utf8.decode(fromHeader);
      } catch {
        invalid('invalid_entrypoint', `header ${options.entrypointHeader} is not valid UTF-8`);
      }
    } else if (fromHeader !== undefined && fromHeader !== null) {
      invalid(
        'invalid_entrypoint',
        `header ${options.entrypointHeader} must be a string, got ${jsonType(fromHeader)}`,
      );
    }
  }
  if (entrypoint === undefined) {
    invalid(
      'missing_entrypoint',
      `header ${options.entrypointHeader ?? '(none)'} is missing and no default is set`,
    );
  }
  checkText('invalid_entrypoint', 'entrypoint', entrypoint, MAX_ENTRYPOINT_BYTES);
  const amqpPriority = message.properties.priority;
  const priority =
    amqpPriority === undefined ? undefined : checkPriority(amqpPriority, 'the AMQP priority property');
  const dedupeKey = decodeDedupeKey(undefined, message, options);
  const headersJson = withTraceContext(undefined, message.properties.headers);
  return build(entrypoint, message.body, priority, undefined, dedupeKey, headersJson);
}

// Only defined fields are set, so "absent" reaches the RPC as "use the SQL default".
function build(
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

function decodePayload(value: unknown, rawText: () => string): Buffer | undefined {
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

function checkPriority(value: unknown, what: string): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < PG_INT_MIN || value > PG_INT_MAX) {
    invalid(
      'invalid_priority',
      `${what} must be an integer from ${PG_INT_MIN} to ${PG_INT_MAX}, got ${describeValue(value)}`,
    );
  }
  return value;
}

function decodeExecuteAfter(value: unknown): string {
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

function decodeDedupeKey(
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

/** PostgreSQL text cannot hold NUL, and lone surrogates have no UTF-8 encoding. */
export function checkText(reason: InvalidReason, what: string, value: string, maxBytes: number): void {
  if (value.trim() === '') invalid(reason, `${what} must not be empty`);
  if (value.includes('\u0000'))
    invalid(reason, `${what} contains a NUL character, which PostgreSQL text cannot store`);
  if (!value.isWellFormed()) invalid(reason, `${what} contains a lone UTF-16 surrogate (not valid Unicode)`);
  const bytes = Buffer.byteLength(value, 'utf8');
  if (bytes > maxBytes) invalid(reason, `${what} is ${bytes} bytes; the limit is ${maxBytes}`);
}

function checkHeaders(value: unknown): void {
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

function checkContentType(contentType: string | undefined): void {
  if (contentType === undefined || contentType === '' || contentType === 'application/json') return;
  const [mediaType = '', ...params] = contentType.toLowerCase().split(';');
  const type = mediaType.trim();
  const isJson =
    type === 'application/json' || type === 'text/json' || /^application\/[a-z0-9.+-]+\+json$/.test(type);
  if (!isJson) {
    invalid(
      'unsupported_content_type',
      `content type ${JSON.stringify(contentType)} is not JSON; envelopes are JSON`,
    );
  }
  for (const param of params) {
    const [name, charset] = param.split('=').map((s) => s.trim().replace(/^"|"$/g, ''));
    if (name === 'charset' && charset !== 'utf-8' && charset !== 'utf8') {
      invalid('unsupported_content_type', `charset ${JSON.stringify(charset)} is not supported; use utf-8`);
    }
  }
}

function checkContentEncoding(encoding: string | undefined): void {
  if (encoding === undefined || encoding === '') return;
  // Some clients put the charset in content_encoding; that is harmless. Compression is not decoded.
  if (['identity', 'utf-8', 'utf8'].includes(encoding.toLowerCase())) return;
  invalid('unsupported_content_encoding', `content encoding ${JSON.stringify(encoding)} is not supported`);
}

function jsonType(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (Buffer.isBuffer(value)) return 'bytes';
  return `a ${typeof value}`;
}

function describeValue(value: unknown): string {
  return typeof value === 'number' ? String(value) : jsonType(value);
}
