import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import type { DecodeOptions, EnqueueArgs, IncomingMessage } from '../../src/message/args.ts';
import { type DecodeResult, decodeMessage } from '../../src/message/decode.ts';
import {
  MAX_DEDUPE_KEY_BYTES,
  MAX_ENTRYPOINT_BYTES,
  MAX_HEADERS_DEPTH,
  PG_INT_MAX,
  PG_INT_MIN,
} from '../../src/message/fields.ts';
import { InvalidMessageError, type InvalidReason } from '../../src/message/invalid.ts';
import { BAD_INPUTS, nestedObject } from '../support/bad-inputs.ts';

type Properties = IncomingMessage['properties'];

const ENVELOPE: DecodeOptions = { mode: 'envelope', dedupeKeyFromMessageId: false };
const ENVELOPE_WITH_MESSAGE_ID: DecodeOptions = { mode: 'envelope', dedupeKeyFromMessageId: true };
const RAW: DecodeOptions = { mode: 'raw', entrypoint: 'raw_job', dedupeKeyFromMessageId: false };

function decode(body: string | Buffer, properties: Properties = {}, options = ENVELOPE): DecodeResult {
  return decodeMessage(
    { body: typeof body === 'string' ? Buffer.from(body, 'utf8') : body, properties },
    options,
  );
}

function accepted(result: DecodeResult): EnqueueArgs {
  if (!result.ok)
    assert.fail(`expected the message to be accepted, got ${result.error.reason}: ${result.error.message}`);
  return result.args;
}

function rejection(result: DecodeResult): InvalidMessageError {
  if (result.ok) assert.fail(`expected a rejection, got ${JSON.stringify(result.args)}`);
  return result.error;
}

/** An envelope whose fields are written as raw JSON text, so spacing and number spelling stay exact. */
function envelopeText(fields: Record<string, string>): string {
  return `{${Object.entries(fields)
    .map(([key, value]) => `${JSON.stringify(key)}:${value}`)
    .join(',')}}`;
}

describe('decodeMessage, envelope: entrypoint', () => {
  const acceptedCases: ReadonlyArray<readonly [string, string, string]> = [
    ['a plain name', '"send_email"', 'send_email'],
    ['non-ASCII text', '"café"', 'café'],
    ['an astral character (a valid surrogate pair)', '"job_\\ud83d\\ude00"', 'job_😀'],
    [
      'exactly the byte limit',
      JSON.stringify('a'.repeat(MAX_ENTRYPOINT_BYTES)),
      'a'.repeat(MAX_ENTRYPOINT_BYTES),
    ],
    [
      'the byte limit in two-byte characters',
      JSON.stringify('é'.repeat(MAX_ENTRYPOINT_BYTES / 2)),
      'é'.repeat(MAX_ENTRYPOINT_BYTES / 2),
    ],
  ];
  for (const [name, json, expected] of acceptedCases) {
    it(`accepts ${name}`, () => {
      assert.deepEqual(accepted(decode(envelopeText({ entrypoint: json }))), { entrypoint: expected });
    });
  }

  const rejectedCases: ReadonlyArray<readonly [string, string | undefined, InvalidReason]> = [
    ['absent', undefined, 'missing_entrypoint'],
    ['null', 'null', 'missing_entrypoint'],
    ['an empty string', '""', 'invalid_entrypoint'],
    ['a number', '123', 'invalid_entrypoint'],
    ['a boolean', 'true', 'invalid_entrypoint'],
    ['an object', '{"name":"e"}', 'invalid_entrypoint'],
    ['an array', '["e"]', 'invalid_entrypoint'],
    ['text with NUL', '"a\\u0000b"', 'invalid_entrypoint'],
    ['a lone high surrogate', '"a\\ud800b"', 'invalid_entrypoint'],
    ['a lone low surrogate', '"\\udc00"', 'invalid_entrypoint'],
    ['one byte over the limit', JSON.stringify('a'.repeat(MAX_ENTRYPOINT_BYTES + 1)), 'invalid_entrypoint'],
    [
      'over the limit in bytes though not in characters',
      JSON.stringify('é'.repeat(MAX_ENTRYPOINT_BYTES / 2 + 1)),
      'invalid_entrypoint',
    ],
  ];
  for (const [name, json, reason] of rejectedCases) {
    it(`rejects an entrypoint that is ${name} (${reason})`, () => {
      const body = json === undefined ? '{"priority":1}' : envelopeText({ entrypoint: json });
      const error = rejection(decode(body));
      assert.equal(error.reason, reason);
      assert.match(error.message, /entrypoint/);
    });
  }
});

describe('decodeMessage, envelope: payload', () => {
  const acceptedCases: ReadonlyArray<readonly [string, string | undefined, Buffer | undefined]> = [
    ['absent: no payload argument', undefined, undefined],
    ['null: no payload argument', 'null', undefined],
    ['base64 text', '"aGVsbG8="', Buffer.from('hello')],
    ['base64 of NUL and 0xFF bytes', '"AP8A/w=="', Buffer.from([0x00, 0xff, 0x00, 0xff])],
    ['an empty base64 string: zero bytes', '""', Buffer.alloc(0)],
    [
      'an object, kept as written',
      '{ "a" : 1,\n  "b": [true, null] }',
      Buffer.from('{ "a" : 1,\n  "b": [true, null] }'),
    ],
    ['an array, kept as written', '[1, 2,3 ]', Buffer.from('[1, 2,3 ]')],
    ['an empty object', '{}', Buffer.from('{}')],
    [
      'big integers, digit for digit',
      '{"n":12345678901234567890}',
      Buffer.from('{"n":12345678901234567890}'),
    ],
    [
      'numbers in the spelling the publisher used',
      '[1.0, 1e3, -0, 0.10000000000000000001]',
      Buffer.from('[1.0, 1e3, -0, 0.10000000000000000001]'),
    ],
    [
      'escapes untouched (they are bytes of the JSON text, not decoded)',
      '{"s":"caf\\u00e9 \\"q\\" \\u0000 \\ud800"}',
      Buffer.from('{"s":"caf\\u00e9 \\"q\\" \\u0000 \\ud800"}'),
    ],
    ['raw UTF-8 inside an object', '{"s":"café 😀"}', Buffer.from('{"s":"café 😀"}', 'utf8')],
  ];
  for (const [name, json, expected] of acceptedCases) {
    it(`accepts ${name}`, () => {
      const fields: Record<string, string> = { entrypoint: '"e"' };
      if (json !== undefined) fields.payload = json;
      const args = accepted(decode(envelopeText(fields)));
      if (expected === undefined) {
        assert.deepEqual(args, { entrypoint: 'e' });
      } else {
        assert.deepEqual(args, { entrypoint: 'e', payload: expected });
      }
    });
  }

  const rejectedCases: ReadonlyArray<readonly [string, string]> = [
    ['a number', '42'],
    ['a big integer', '12345678901234567890'],
    ['a boolean', 'true'],
    ['text that is not base64', '"hello world"'],
    ['base64 with trailing garbage', '"aGVsbG8=x"'],
    ['base64 with too much padding', '"aGVsbG8=="'],
    ['base64 with inner whitespace', '"aGVs bG8="'],
    ['URL-safe base64 characters', '"-_-_"'],
    ['a single base64 character', '"a"'],
    ['only padding', '"===="'],
    ['bytea hex text (it is not base64)', '"\\\\x68656c6c6f"'],
  ];
  for (const [name, json] of rejectedCases) {
    it(`rejects a payload that is ${name}`, () => {
      const error = rejection(decode(envelopeText({ entrypoint: '"e"', payload: json })));
      assert.equal(error.reason, 'invalid_payload');
      assert.match(error.message, /payload/);
    });
  }

  it('keeps a 1 MiB base64 payload byte for byte', () => {
    const bytes = randomBytes(1024 * 1024);
    const body = JSON.stringify({ entrypoint: 'big', payload: bytes.toString('base64') });
    const args = accepted(decode(body));
    assert.ok(args.payload?.equals(bytes));
  });

  it('keeps a 1 MiB JSON payload byte for byte', () => {
    const item = '{"id":12345678901234567890, "text": "x"}';
    const json = `[${Array.from({ length: Math.ceil((1024 * 1024) / item.length) }, () => item).join(',\n')}]`;
    const args = accepted(decode(envelopeText({ entrypoint: '"big"', payload: json })));
    assert.ok(args.payload?.equals(Buffer.from(json, 'utf8')));
  });

  // RabbitMQ accepts messages far larger than this; validating the base64 text must not blow the stack.
  it('keeps an 8 MiB base64 payload byte for byte', () => {
    const bytes = Buffer.alloc(8 * 1024 * 1024, 0xa5);
    const body = JSON.stringify({ entrypoint: 'big', payload: bytes.toString('base64') });
    const args = accepted(decode(body));
    assert.ok(args.payload?.equals(bytes));
  });

  it('rejects an 8 MiB string that is not base64 as invalid_payload', () => {
    const body = JSON.stringify({ entrypoint: 'big', payload: `${'A'.repeat(8 * 1024 * 1024)}!` });
    assert.equal(rejection(decode(body)).reason, 'invalid_payload');
  });
});

describe('decodeMessage, envelope: priority', () => {
  const acceptedCases: ReadonlyArray<readonly [string, number]> = [
    ['0', 0],
    ['5', 5],
    ['-5', -5],
    [String(PG_INT_MAX), 2_147_483_647],
    [String(PG_INT_MIN), -2_147_483_648],
    ['7.0', 7],
    ['1e2', 100],
  ];
  for (const [json, expected] of acceptedCases) {
    it(`accepts ${json}`, () => {
      assert.deepEqual(accepted(decode(envelopeText({ entrypoint: '"e"', priority: json }))), {
        entrypoint: 'e',
        priority: expected,
      });
    });
  }

  const rejectedCases = [
    '2147483648',
    '-2147483649',
    '3000000000',
    '1e10',
    '5.5',
    '-0.5',
    '"7"',
    'true',
    'null',
    '{}',
    '[1]',
  ];
  for (const json of rejectedCases) {
    it(`rejects ${json}`, () => {
      const error = rejection(decode(envelopeText({ entrypoint: '"e"', priority: json })));
      assert.equal(error.reason, 'invalid_priority');
      assert.match(error.message, /priority/);
    });
  }
});

describe('decodeMessage, envelope: execute_after', () => {
  const acceptedCases: ReadonlyArray<readonly [string, string]> = [
    ['0', '0 seconds'],
    ['10', '10 seconds'],
    ['1.5', '1.5 seconds'],
    ['0.25', '0.25 seconds'],
    ['86400', '86400 seconds'],
    ['"10 seconds"', '10 seconds'],
    ['"PT10S"', 'PT10S'],
    ['"1 day 02:00:00"', '1 day 02:00:00'],
    // PostgreSQL judges interval syntax; a bad one comes back from the RPC as 22007.
    ['"ten seconds"', 'ten seconds'],
  ];
  for (const [json, expected] of acceptedCases) {
    it(`accepts ${json} as ${JSON.stringify(expected)}`, () => {
      assert.deepEqual(accepted(decode(envelopeText({ entrypoint: '"e"', execute_after: json }))), {
        entrypoint: 'e',
        executeAfter: expected,
      });
    });
  }

  it('writes tiny and fractional second counts without an exponent (interval input cannot read 1e-7)', () => {
    for (const json of ['1e-7', '0.000001', '123.456789', '5e-324']) {
      const args = accepted(decode(envelopeText({ entrypoint: '"e"', execute_after: json })));
      assert.match(args.executeAfter ?? '', /^\d+(\.\d*)? seconds$/, json);
    }
  });

  const rejectedCases = [
    '-1',
    '-0.5',
    '""',
    '"   "',
    'true',
    'null',
    '{}',
    '["10 seconds"]',
    '"1\\u0000s"',
    '"\\ud800"',
  ];
  for (const json of rejectedCases) {
    it(`rejects ${json}`, () => {
      const error = rejection(decode(envelopeText({ entrypoint: '"e"', execute_after: json })));
      assert.equal(error.reason, 'invalid_execute_after');
      assert.match(error.message, /execute_after/);
    });
  }
});

describe('decodeMessage, envelope: dedupe_key', () => {
  const acceptedCases: ReadonlyArray<readonly [string, string | undefined, string | undefined]> = [
    ['a key', '"order-42"', 'order-42'],
    ['absent', undefined, undefined],
    ['null', 'null', undefined],
    [
      'exactly the byte limit',
      JSON.stringify('k'.repeat(MAX_DEDUPE_KEY_BYTES)),
      'k'.repeat(MAX_DEDUPE_KEY_BYTES),
    ],
  ];
  for (const [name, json, expected] of acceptedCases) {
    it(`accepts ${name}`, () => {
      const fields: Record<string, string> = { entrypoint: '"e"' };
      if (json !== undefined) fields.dedupe_key = json;
      const args = accepted(decode(envelopeText(fields)));
      assert.deepEqual(
        args,
        expected === undefined ? { entrypoint: 'e' } : { entrypoint: 'e', dedupeKey: expected },
      );
    });
  }

  const rejectedCases = [
    '5',
    'true',
    '{}',
    '["k"]',
    '"a\\u0000b"',
    '"\\udc00"',
    JSON.stringify('k'.repeat(MAX_DEDUPE_KEY_BYTES + 1)),
  ];
  for (const json of rejectedCases) {
    it(`rejects ${json.length > 40 ? `${json.slice(0, 20)}… (${json.length} chars)` : json}`, () => {
      const error = rejection(decode(envelopeText({ entrypoint: '"e"', dedupe_key: json })));
      assert.equal(error.reason, 'invalid_dedupe_key');
      assert.match(error.message, /dedupe_key/);
    });
  }

  it('uses the AMQP message-id when asked and the envelope has no key', () => {
    const args = accepted(decode('{"entrypoint":"e"}', { messageId: 'msg-1' }, ENVELOPE_WITH_MESSAGE_ID));
    assert.deepEqual(args, { entrypoint: 'e', dedupeKey: 'msg-1' });
  });

  it('uses the AMQP message-id when the envelope key is null', () => {
    const body = '{"entrypoint":"e","dedupe_key":null}';
    const args = accepted(decode(body, { messageId: 'msg-1' }, ENVELOPE_WITH_MESSAGE_ID));
    assert.deepEqual(args, { entrypoint: 'e', dedupeKey: 'msg-1' });
  });

  it("prefers the envelope's own key over the message-id", () => {
    const body = '{"entrypoint":"e","dedupe_key":"own"}';
    const args = accepted(decode(body, { messageId: 'msg-1' }, ENVELOPE_WITH_MESSAGE_ID));
    assert.deepEqual(args, { entrypoint: 'e', dedupeKey: 'own' });
  });

  it('ignores the message-id unless the source asks for it', () => {
    assert.deepEqual(accepted(decode('{"entrypoint":"e"}', { messageId: 'msg-1' })), { entrypoint: 'e' });
  });

  it('ignores an empty message-id', () => {
    const args = accepted(decode('{"entrypoint":"e"}', { messageId: '' }, ENVELOPE_WITH_MESSAGE_ID));
    assert.deepEqual(args, { entrypoint: 'e' });
  });

  it('rejects a message-id that PostgreSQL text cannot hold', () => {
    for (const messageId of ['a\u0000b', '\ud800']) {
      const error = rejection(decode('{"entrypoint":"e"}', { messageId }, ENVELOPE_WITH_MESSAGE_ID));
      assert.equal(error.reason, 'invalid_dedupe_key');
      assert.match(error.message, /message-id/);
    }
  });
});

describe('decodeMessage, envelope: headers', () => {
  const acceptedCases: ReadonlyArray<readonly [string, string]> = [
    ['an empty object', '{}'],
    ['an object with its spacing', '{ "trace" : "abc",\n "n": 1 }'],
    ['big integers, digit for digit', '{"id":12345678901234567890,"f":1.50}'],
    ['nested objects and arrays', '{"otel":{"traceparent":"00-ab-cd-01"},"tags":["a",{"b":null}]}'],
    ['non-ASCII keys and values', '{"clé":"värde 😀","\\u00e9":"\\ud83d\\ude00"}'],
    ['duplicate keys (jsonb keeps the last)', '{"a":1,"a":2}'],
    [`${MAX_HEADERS_DEPTH} levels of nesting`, nestedObject(MAX_HEADERS_DEPTH, '1')],
    ['a scalar at the deepest allowed level inside an array', nestedObject(MAX_HEADERS_DEPTH - 1, '[1,"x"]')],
  ];
  for (const [name, json] of acceptedCases) {
    it(`forwards ${name} as the publisher's exact text`, () => {
      const args = accepted(decode(envelopeText({ entrypoint: '"e"', headers: json })));
      assert.deepEqual(args, { entrypoint: 'e', headersJson: json });
    });
  }

  it('treats null and absent headers as no headers', () => {
    assert.deepEqual(accepted(decode('{"entrypoint":"e","headers":null}')), { entrypoint: 'e' });
    assert.deepEqual(accepted(decode('{"entrypoint":"e"}')), { entrypoint: 'e' });
  });

  const rejectedCases: ReadonlyArray<readonly [string, string]> = [
    ['an array', '[1,2]'],
    ['a string holding JSON', '"{\\"a\\":1}"'],
    ['a number', '5'],
    ['a boolean', 'false'],
    ['a value with NUL', '{"k":"a\\u0000b"}'],
    ['a key with NUL', '{"a\\u0000":1}'],
    ['a value with a lone surrogate', '{"k":"\\ud800"}'],
    ['a key with a lone surrogate', '{"\\udfffx":1}'],
    ['a lone surrogate deep inside', '{"a":{"b":[1,{"c":["ok","\\udc00"]}]}}'],
    ['a NUL in a deeply nested key', nestedObject(10, '{"k\\u0000":1}')],
    [`${MAX_HEADERS_DEPTH + 1} levels of nesting`, nestedObject(MAX_HEADERS_DEPTH + 1, '1')],
    ['arrays nested too deep', `{"a":${'['.repeat(MAX_HEADERS_DEPTH)}${']'.repeat(MAX_HEADERS_DEPTH)}}`],
    ['nesting far beyond the limit', nestedObject(5000, '1')],
  ];
  for (const [name, json] of rejectedCases) {
    it(`rejects ${name}`, () => {
      const error = rejection(decode(envelopeText({ entrypoint: '"e"', headers: json })));
      assert.equal(error.reason, 'invalid_headers');
      assert.match(error.message, /headers/);
    });
  }
});

describe('decodeMessage, envelope: content type and encoding', () => {
  const acceptedTypes = [
    undefined,
    '',
    'application/json',
    'application/json; charset=utf-8',
    'application/json;charset=UTF-8',
    'Application/JSON; Charset="utf-8"',
    'application/json; charset=utf8',
    'text/json',
    'application/vnd.acme.order+json',
    'application/cloudevents+json; charset=utf-8',
  ];
  for (const contentType of acceptedTypes) {
    it(`accepts content type ${JSON.stringify(contentType)}`, () => {
      assert.deepEqual(accepted(decode('{"entrypoint":"e"}', { contentType })), { entrypoint: 'e' });
    });
  }

  const rejectedTypes = [
    'text/plain',
    'application/xml',
    'application/octet-stream',
    'application/x-www-form-urlencoded',
    'application/jsonp',
    'application/json+xml',
    'application/+json',
    'application/json; charset=iso-8859-1',
    'application/json; charset=utf-16',
    'text/json; charset=us-ascii',
  ];
  for (const contentType of rejectedTypes) {
    it(`rejects content type ${JSON.stringify(contentType)}`, () => {
      const error = rejection(decode('{"entrypoint":"e"}', { contentType }));
      assert.equal(error.reason, 'unsupported_content_type');
      assert.notEqual(error.message, '');
    });
  }

  for (const contentEncoding of [undefined, '', 'identity', 'utf-8', 'UTF-8', 'utf8']) {
    it(`accepts content encoding ${JSON.stringify(contentEncoding)}`, () => {
      assert.deepEqual(accepted(decode('{"entrypoint":"e"}', { contentEncoding })), { entrypoint: 'e' });
    });
  }

  for (const contentEncoding of ['gzip', 'deflate', 'br', 'base64', 'latin1']) {
    it(`rejects content encoding ${JSON.stringify(contentEncoding)}`, () => {
      const error = rejection(decode('{"entrypoint":"e"}', { contentEncoding }));
      assert.equal(error.reason, 'unsupported_content_encoding');
      assert.match(error.message, new RegExp(contentEncoding));
    });
  }
});

describe('decodeMessage, envelope: shape of the body', () => {
  it('decodes a full envelope into all six arguments', () => {
    const body = JSON.stringify({
      entrypoint: 'full',
      payload: 'aGVsbG8=',
      priority: 5,
      execute_after: '10 seconds',
      dedupe_key: 'k1',
      headers: { trace: 'abc' },
    });
    assert.deepEqual(accepted(decode(body)), {
      entrypoint: 'full',
      payload: Buffer.from('hello'),
      priority: 5,
      executeAfter: '10 seconds',
      dedupeKey: 'k1',
      headersJson: '{"trace":"abc"}',
    });
  });

  it('leaves absent optional arguments out entirely (so the SQL defaults apply)', () => {
    const args = accepted(decode('{"entrypoint":"e"}'));
    assert.deepEqual(Object.keys(args), ['entrypoint']);
  });

  it('lets the last of duplicate keys win, as PostgREST does', () => {
    assert.deepEqual(accepted(decode('{"entrypoint":"first","entrypoint":"second"}')), {
      entrypoint: 'second',
    });
  });

  it('takes the last payload when an object is followed by base64', () => {
    const args = accepted(decode('{"entrypoint":"e","payload":{"a":1},"payload":"aGk="}'));
    assert.deepEqual(args, { entrypoint: 'e', payload: Buffer.from('hi') });
  });

  it('takes the text of the last payload when base64 is followed by an object', () => {
    const args = accepted(decode('{"entrypoint":"e","payload":"aGk=","payload":{ "last": 2 }}'));
    assert.deepEqual(args, { entrypoint: 'e', payload: Buffer.from('{ "last": 2 }') });
  });

  it('takes the text of the last of two header objects', () => {
    const args = accepted(decode('{"entrypoint":"e","headers":{"a":1},"headers":{"b": 2}}'));
    assert.deepEqual(args, { entrypoint: 'e', headersJson: '{"b": 2}' });
  });

  it('drops headers when a later duplicate is null', () => {
    assert.deepEqual(accepted(decode('{"entrypoint":"e","headers":{"a":1},"headers":null}')), {
      entrypoint: 'e',
    });
  });

  it('finds fields whose names are written with escapes', () => {
    const args = accepted(decode('{"\\u0065ntrypoint":"e","p\\u0061yload":{"x":1},"headers":{"y":2}}'));
    assert.deepEqual(args, { entrypoint: 'e', payload: Buffer.from('{"x":1}'), headersJson: '{"y":2}' });
  });

  it('is not fooled by braces and quotes inside strings before the payload', () => {
    const body = '{"entrypoint":"}{\\"payload\\":[","dedupe_key":"]}","payload":{"s":"}\\"]{"}}';
    const args = accepted(decode(body));
    assert.deepEqual(args, {
      entrypoint: '}{"payload":[',
      dedupeKey: ']}',
      payload: Buffer.from('{"s":"}\\"]{"}'),
    });
  });

  it('accepts a UTF-8 byte order mark and keeps the payload bytes exact', () => {
    const json = '{"entrypoint":"bom","payload":{"a":1}}';
    const body = Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(json)]);
    assert.deepEqual(accepted(decode(body)), { entrypoint: 'bom', payload: Buffer.from('{"a":1}') });
  });

  it('accepts whitespace around and inside the envelope and keeps the payload bytes exact', () => {
    const body =
      '\r\n\t {\n  "entrypoint" :\t"e" ,\n  "payload" : [ 1 ,\n 2 ] ,\n  "headers": { "h" : 1 }\n}\n ';
    assert.deepEqual(accepted(decode(body)), {
      entrypoint: 'e',
      payload: Buffer.from('[ 1 ,\n 2 ]'),
      headersJson: '{ "h" : 1 }',
    });
  });

  it('keeps a payload nested far deeper than the headers limit (payload is opaque bytes)', () => {
    const json = `${'['.repeat(10_000)}${']'.repeat(10_000)}`;
    const args = accepted(decode(envelopeText({ entrypoint: '"e"', payload: json })));
    assert.ok(args.payload?.equals(Buffer.from(json)));
  });

  it('rejects every unknown field and names it in the message', () => {
    for (const field of [
      'foo',
      'Entrypoint',
      'execute-after',
      'executeAfter',
      '__proto__',
      'constructor',
      '',
    ]) {
      const body = `{"entrypoint":"e",${JSON.stringify(field)}:1}`;
      const error = rejection(decode(body));
      assert.equal(error.reason, 'unknown_field', field);
      assert.ok(error.message.includes(JSON.stringify(field)), `${field}: ${error.message}`);
    }
  });
});

describe('decodeMessage, raw mode', () => {
  it('passes binary bytes, including 0x00 and 0xFF, through unchanged', () => {
    const body = Buffer.from([0x00, 0xff, 0x80, 0x0a, 0x00, 0xfe, 0xff, 0x22, 0x5c]);
    assert.deepEqual(accepted(decode(body, {}, RAW)), { entrypoint: 'raw_job', payload: body });
  });

  it('passes every byte value through unchanged', () => {
    const body = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
    assert.ok(accepted(decode(body, {}, RAW)).payload?.equals(body));
  });

  it('keeps a 1 MiB body byte for byte', () => {
    const body = randomBytes(1024 * 1024);
    assert.ok(accepted(decode(body, {}, RAW)).payload?.equals(body));
  });

  it('keeps a byte order mark as part of the payload', () => {
    const body = Buffer.from([0xef, 0xbb, 0xbf, 0x68, 0x69]);
    assert.ok(accepted(decode(body, {}, RAW)).payload?.equals(body));
  });

  it('does not read a JSON body as an envelope', () => {
    const body = Buffer.from('{"entrypoint":"other","priority":9}');
    assert.deepEqual(accepted(decode(body, {}, RAW)), { entrypoint: 'raw_job', payload: body });
  });

  it('takes an empty body as an empty payload', () => {
    assert.deepEqual(accepted(decode(Buffer.alloc(0), {}, RAW)), {
      entrypoint: 'raw_job',
      payload: Buffer.alloc(0),
    });
  });

  it('ignores the content type and encoding (the bytes are the payload)', () => {
    const body = Buffer.from([0x89, 0x50, 0x4e, 0x47]);
    const args = accepted(decode(body, { contentType: 'image/png', contentEncoding: 'binary' }, RAW));
    assert.deepEqual(args, { entrypoint: 'raw_job', payload: body });
  });

  it('takes the priority from the AMQP priority property', () => {
    const body = Buffer.from('x');
    assert.deepEqual(accepted(decode(body, { priority: 9 }, RAW)), {
      entrypoint: 'raw_job',
      payload: body,
      priority: 9,
    });
    assert.deepEqual(accepted(decode(body, { priority: 0 }, RAW)), {
      entrypoint: 'raw_job',
      payload: body,
      priority: 0,
    });
    assert.deepEqual(accepted(decode(body, {}, RAW)), { entrypoint: 'raw_job', payload: body });
  });

  it('takes the dedupe key from the message-id only when asked', () => {
    const body = Buffer.from('x');
    const withId: DecodeOptions = { ...RAW, dedupeKeyFromMessageId: true };
    assert.deepEqual(accepted(decode(body, { messageId: 'm-7' }, withId)), {
      entrypoint: 'raw_job',
      payload: body,
      dedupeKey: 'm-7',
    });
    assert.deepEqual(accepted(decode(body, { messageId: 'm-7' }, RAW)), {
      entrypoint: 'raw_job',
      payload: body,
    });
    assert.equal(rejection(decode(body, { messageId: 'a\u0000' }, withId)).reason, 'invalid_dedupe_key');
  });

  describe('entrypoint from an AMQP header', () => {
    const fromHeader: DecodeOptions = {
      mode: 'raw',
      entrypointHeader: 'x-entrypoint',
      dedupeKeyFromMessageId: false,
    };
    const withDefault: DecodeOptions = { ...fromHeader, entrypoint: 'fallback' };
    const body = Buffer.from('payload');

    it('reads a string header', () => {
      const args = accepted(decode(body, { headers: { 'x-entrypoint': 'resize' } }, fromHeader));
      assert.deepEqual(args, { entrypoint: 'resize', payload: body });
    });

    it('reads a byte-string header as UTF-8', () => {
      const args = accepted(decode(body, { headers: { 'x-entrypoint': Buffer.from('café') } }, fromHeader));
      assert.deepEqual(args, { entrypoint: 'café', payload: body });
    });

    it('prefers the header over the configured entrypoint', () => {
      const args = accepted(decode(body, { headers: { 'x-entrypoint': 'resize' } }, withDefault));
      assert.deepEqual(args, { entrypoint: 'resize', payload: body });
    });

    it('falls back to the configured entrypoint when the header is absent or null', () => {
      assert.deepEqual(accepted(decode(body, {}, withDefault)), { entrypoint: 'fallback', payload: body });
      assert.deepEqual(accepted(decode(body, { headers: { 'x-entrypoint': null } }, withDefault)), {
        entrypoint: 'fallback',
        payload: body,
      });
    });

    it('rejects a missing header when there is no fallback', () => {
      const error = rejection(decode(body, { headers: { other: 'x' } }, fromHeader));
      assert.equal(error.reason, 'missing_entrypoint');
      assert.match(error.message, /x-entrypoint/);
    });

    const badHeaders: ReadonlyArray<readonly [string, unknown]> = [
      ['a number', 42],
      ['a boolean', true],
      ['an object', { name: 'x' }],
      ['an empty string', ''],
      ['text with NUL', 'a\u0000b'],
      ['a lone surrogate', '\ud800'],
      ['too long', 'e'.repeat(MAX_ENTRYPOINT_BYTES + 1)],
    ];
    for (const [name, value] of badHeaders) {
      it(`rejects a header that is ${name}`, () => {
        const error = rejection(decode(body, { headers: { 'x-entrypoint': value } }, withDefault));
        assert.equal(error.reason, 'invalid_entrypoint');
      });
    }
  });
});

describe('decodeMessage, bad-input corpus', () => {
  const corpus = BAD_INPUTS;

  it('has at least 40 distinct cases', () => {
    assert.ok(corpus.length >= 40, `${corpus.length} cases`);
    assert.equal(new Set(corpus.map((c) => c.name)).size, corpus.length);
  });

  for (const c of corpus) {
    it(`${c.name} → ${c.reason}`, () => {
      const result = decode(c.body, c.properties ?? {}, c.options ?? ENVELOPE);
      const error = rejection(result);
      assert.ok(error instanceof InvalidMessageError);
      assert.equal(error.kind, 'invalid_message');
      assert.equal(error.reason, c.reason);
      assert.ok(error.message.length > 10, `a readable message, got ${JSON.stringify(error.message)}`);
      assert.notEqual(error.message, c.reason);
    });
  }
});

describe('trace context propagation', () => {
  const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';

  it("copies traceparent, tracestate and baggage into headers.otel and keeps the publisher's headers as written", () => {
    const result = decode('{"entrypoint":"e","headers":{"big": 12345678901234567890}}', {
      headers: { traceparent, tracestate: 'vendor=x', baggage: 'user=1', other: 'ignored' },
    });
    const headersJson = accepted(result).headersJson ?? '';
    assert.deepEqual(JSON.parse(headersJson).otel, {
      traceparent,
      tracestate: 'vendor=x',
      baggage: 'user=1',
    });
    assert.ok(headersJson.includes('"big": 12345678901234567890'), headersJson);
  });

  it('creates headers when the message had none, in envelope and raw mode', () => {
    for (const options of [ENVELOPE, RAW]) {
      const result = decode(
        options.mode === 'raw' ? 'x' : '{"entrypoint":"e"}',
        { headers: { traceparent } },
        options,
      );
      assert.equal(accepted(result).headersJson, `{"otel":{"traceparent":"${traceparent}"}}`);
    }
  });

  it('fills an empty headers object', () => {
    const result = decode('{"entrypoint":"e","headers":{ }}', { headers: { traceparent } });
    assert.equal(accepted(result).headersJson, `{"otel":{"traceparent":"${traceparent}"}}`);
  });

  it('keeps an otel object the publisher supplied', () => {
    const result = decode('{"entrypoint":"e","headers":{"otel":{"traceparent":"mine"}}}', {
      headers: { traceparent },
    });
    assert.equal(accepted(result).headersJson, '{"otel":{"traceparent":"mine"}}');
  });

  it('adds nothing without a traceparent, or for a non-ASCII one', () => {
    assert.equal(
      accepted(decode('{"entrypoint":"e"}', { headers: { tracestate: 'a=b' } })).headersJson,
      undefined,
    );
    assert.equal(
      accepted(decode('{"entrypoint":"e"}', { headers: { traceparent: 'caf\u00e9' } })).headersJson,
      undefined,
    );
  });
});
