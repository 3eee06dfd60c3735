import { isUtf8 } from 'node:buffer';
import { buildArgs, type DecodeOptions, type EnqueueArgs, type IncomingMessage } from './args.ts';
import {
  checkHeaders,
  checkPriority,
  checkText,
  decodeDedupeKey,
  decodeExecuteAfter,
  decodePayload,
  MAX_ENTRYPOINT_BYTES,
  withTraceContext,
} from './fields.ts';
import { invalid, jsonType } from './invalid.ts';
import { topLevelSpans } from './json-span.ts';

/**
 * Envelope mode: the body is a JSON object whose fields are the enqueue arguments. Payload
 * objects and headers are forwarded as the exact text the publisher sent, not re-serialised.
 */

const ENVELOPE_FIELDS = new Set([
  'entrypoint',
  'payload',
  'priority',
  'execute_after',
  'dedupe_key',
  'headers',
]);

export function decodeEnvelope(message: IncomingMessage, options: DecodeOptions): EnqueueArgs {
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

  return buildArgs(entrypoint, payload, priority, executeAfter, dedupeKey, headersJson);
}

function rejectUnknownFields(fields: Record<string, unknown>, identityField: string | undefined): never {
  const unknown = Object.keys(fields).filter((key) => !ENVELOPE_FIELDS.has(key) && key !== identityField);
  invalid(
    'unknown_field',
    `unknown field${unknown.length > 1 ? 's' : ''} ${unknown.map((k) => JSON.stringify(k)).join(', ')}; ` +
      `allowed: entrypoint, payload, priority, execute_after, dedupe_key, headers${identityField === undefined ? '' : `, ${identityField}`}`,
  );
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
