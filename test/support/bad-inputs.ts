import type { DecodeOptions, IncomingMessage } from '../../src/message/args.ts';
import { MAX_HEADERS_DEPTH } from '../../src/message/fields.ts';
import type { InvalidReason } from '../../src/message/invalid.ts';

/**
 * Malformed and hostile messages, each with the rejection reason the bridge must give. Shared by
 * the unit test of decoding and the integration test that sends them through the real bridge.
 */

type Properties = IncomingMessage['properties'];

/** JSON text of objects nested `levels` deep around `leaf`. */
export function nestedObject(levels: number, leaf: string): string {
  return `${'{"a":'.repeat(levels)}${leaf}${'}'.repeat(levels)}`;
}

export interface BadInput {
  readonly name: string;
  readonly body: string | Buffer;
  readonly properties?: Properties;
  readonly options?: DecodeOptions;
  readonly reason: InvalidReason;
}
const bytes = (...parts: Array<string | number[]>): Buffer =>
  Buffer.concat(parts.map((part) => (typeof part === 'string' ? Buffer.from(part) : Buffer.from(part))));

export const BAD_INPUTS: readonly BadInput[] = [
  { name: 'empty body', body: '', reason: 'empty_body' },
  { name: 'a lone 0xFF byte', body: bytes([0xff]), reason: 'invalid_utf8' },
  {
    name: 'Latin-1 é inside a string',
    body: bytes('{"entrypoint":"caf', [0xe9], '"}'),
    reason: 'invalid_utf8',
  },
  {
    name: 'overlong encoding of "/"',
    body: bytes('{"entrypoint":"', [0xc0, 0xaf], '"}'),
    reason: 'invalid_utf8',
  },
  {
    name: 'UTF-8-encoded surrogate',
    body: bytes('{"entrypoint":"', [0xed, 0xa0, 0x80], '"}'),
    reason: 'invalid_utf8',
  },
  {
    name: 'truncated multi-byte sequence',
    body: bytes('{"entrypoint":"caf', [0xc3], '"}'),
    reason: 'invalid_utf8',
  },
  { name: 'UTF-16LE body', body: Buffer.from('{"entrypoint":"e"}', 'utf16le'), reason: 'invalid_json' },
  { name: 'a lone brace', body: '{', reason: 'invalid_json' },
  { name: 'missing closing brace', body: '{"entrypoint":"e"', reason: 'invalid_json' },
  { name: 'trailing garbage', body: '{"entrypoint":"e"} x', reason: 'invalid_json' },
  { name: 'two objects', body: '{"entrypoint":"e"}{"entrypoint":"f"}', reason: 'invalid_json' },
  { name: 'single quotes', body: "{'entrypoint':'e'}", reason: 'invalid_json' },
  { name: 'trailing comma', body: '{"entrypoint":"e",}', reason: 'invalid_json' },
  { name: 'NaN literal', body: '{"entrypoint":"e","priority":NaN}', reason: 'invalid_json' },
  { name: 'a comment', body: '{"entrypoint":"e"} // job', reason: 'invalid_json' },
  { name: 'unquoted key', body: '{entrypoint:"e"}', reason: 'invalid_json' },
  { name: 'raw control character in a string', body: '{"entrypoint":"a\tb"}', reason: 'invalid_json' },
  { name: 'invalid escape', body: '{"entrypoint":"a\\qb"}', reason: 'invalid_json' },
  { name: 'whitespace only', body: ' \n\t ', reason: 'invalid_json' },
  {
    name: 'two byte order marks',
    body: bytes([0xef, 0xbb, 0xbf, 0xef, 0xbb, 0xbf], '{"entrypoint":"e"}'),
    reason: 'invalid_json',
  },
  { name: 'JSON null', body: 'null', reason: 'not_an_object' },
  { name: 'JSON array of envelopes', body: '[{"entrypoint":"e"}]', reason: 'not_an_object' },
  { name: 'empty array', body: '[]', reason: 'not_an_object' },
  { name: 'JSON string', body: '"x"', reason: 'not_an_object' },
  { name: 'JSON number', body: '42', reason: 'not_an_object' },
  { name: 'JSON true', body: 'true', reason: 'not_an_object' },
  { name: 'an unknown field', body: '{"entrypoint":"e","foo":1}', reason: 'unknown_field' },
  { name: 'a field in the wrong case', body: '{"Entrypoint":"e"}', reason: 'unknown_field' },
  {
    name: 'a __proto__ field',
    body: '{"entrypoint":"e","__proto__":{"priority":1}}',
    reason: 'unknown_field',
  },
  {
    name: 'PostgreSQL-style misspelling',
    body: '{"entrypoint":"e","execute-after":5}',
    reason: 'unknown_field',
  },
  {
    name: 'text/plain content type',
    body: '{"entrypoint":"e"}',
    properties: { contentType: 'text/plain' },
    reason: 'unsupported_content_type',
  },
  {
    name: 'Latin-1 charset',
    body: '{"entrypoint":"e"}',
    properties: { contentType: 'application/json; charset=latin1' },
    reason: 'unsupported_content_type',
  },
  {
    name: 'gzip encoding',
    body: '{"entrypoint":"e"}',
    properties: { contentEncoding: 'gzip' },
    reason: 'unsupported_content_encoding',
  },
  { name: 'empty object', body: '{}', reason: 'missing_entrypoint' },
  { name: 'null entrypoint', body: '{"entrypoint":null}', reason: 'missing_entrypoint' },
  { name: 'only a payload', body: '{"payload":"AA=="}', reason: 'missing_entrypoint' },
  { name: 'empty entrypoint', body: '{"entrypoint":""}', reason: 'invalid_entrypoint' },
  { name: 'numeric entrypoint', body: '{"entrypoint":123}', reason: 'invalid_entrypoint' },
  { name: 'NUL in entrypoint', body: '{"entrypoint":"a\\u0000b"}', reason: 'invalid_entrypoint' },
  { name: 'lone surrogate in entrypoint', body: '{"entrypoint":"\\ud800"}', reason: 'invalid_entrypoint' },
  { name: 'numeric payload', body: '{"entrypoint":"e","payload":42}', reason: 'invalid_payload' },
  { name: 'boolean payload', body: '{"entrypoint":"e","payload":false}', reason: 'invalid_payload' },
  {
    name: 'plain-text payload',
    body: '{"entrypoint":"e","payload":"hello world"}',
    reason: 'invalid_payload',
  },
  {
    name: 'base64 with garbage',
    body: '{"entrypoint":"e","payload":"aGVsbG8=x"}',
    reason: 'invalid_payload',
  },
  {
    name: 'priority beyond int4',
    body: '{"entrypoint":"e","priority":3000000000}',
    reason: 'invalid_priority',
  },
  { name: 'fractional priority', body: '{"entrypoint":"e","priority":5.5}', reason: 'invalid_priority' },
  { name: 'priority as text', body: '{"entrypoint":"e","priority":"7"}', reason: 'invalid_priority' },
  { name: 'boolean priority', body: '{"entrypoint":"e","priority":true}', reason: 'invalid_priority' },
  {
    name: 'negative delay',
    body: '{"entrypoint":"e","execute_after":-1}',
    reason: 'invalid_execute_after',
  },
  { name: 'empty delay', body: '{"entrypoint":"e","execute_after":""}', reason: 'invalid_execute_after' },
  {
    name: 'boolean delay',
    body: '{"entrypoint":"e","execute_after":true}',
    reason: 'invalid_execute_after',
  },
  {
    name: 'NUL in delay',
    body: '{"entrypoint":"e","execute_after":"1\\u0000"}',
    reason: 'invalid_execute_after',
  },
  { name: 'numeric dedupe key', body: '{"entrypoint":"e","dedupe_key":5}', reason: 'invalid_dedupe_key' },
  {
    name: 'NUL in dedupe key',
    body: '{"entrypoint":"e","dedupe_key":"k\\u0000"}',
    reason: 'invalid_dedupe_key',
  },
  {
    name: 'lone surrogate in dedupe key',
    body: '{"entrypoint":"e","dedupe_key":"\\udc00"}',
    reason: 'invalid_dedupe_key',
  },
  {
    name: 'NUL in the message-id used as dedupe key',
    body: '{"entrypoint":"e"}',
    properties: { messageId: 'id\u0000' },
    options: { mode: 'envelope', dedupeKeyFromMessageId: true },
    reason: 'invalid_dedupe_key',
  },
  { name: 'array headers', body: '{"entrypoint":"e","headers":[1,2]}', reason: 'invalid_headers' },
  { name: 'string headers', body: '{"entrypoint":"e","headers":"{\\"a\\":1}"}', reason: 'invalid_headers' },
  { name: 'numeric headers', body: '{"entrypoint":"e","headers":5}', reason: 'invalid_headers' },
  {
    name: 'NUL in a header value',
    body: '{"entrypoint":"e","headers":{"k":"a\\u0000b"}}',
    reason: 'invalid_headers',
  },
  {
    name: 'NUL in a header key',
    body: '{"entrypoint":"e","headers":{"\\u0000":1}}',
    reason: 'invalid_headers',
  },
  {
    name: 'lone surrogate in a header key',
    body: '{"entrypoint":"e","headers":{"\\ud800":1}}',
    reason: 'invalid_headers',
  },
  {
    name: 'lone surrogate deep in header arrays',
    body: '{"entrypoint":"e","headers":{"a":[[["x",{"b":"\\udfff"}]]]}}',
    reason: 'invalid_headers',
  },
  {
    name: 'headers nested too deep',
    body: `{"entrypoint":"e","headers":${nestedObject(MAX_HEADERS_DEPTH + 1, '1')}}`,
    reason: 'invalid_headers',
  },
  {
    name: 'raw: missing entrypoint header and no fallback',
    body: 'x',
    options: { mode: 'raw', entrypointHeader: 'x-ep', dedupeKeyFromMessageId: false },
    reason: 'missing_entrypoint',
  },
  {
    name: 'raw: numeric entrypoint header',
    body: 'x',
    properties: { headers: { 'x-ep': 7 } },
    options: { mode: 'raw', entrypointHeader: 'x-ep', dedupeKeyFromMessageId: false },
    reason: 'invalid_entrypoint',
  },
];
