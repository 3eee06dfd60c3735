import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import type { EnqueueArgs } from '../../src/message/args.ts';
import type { RpcResult } from '../../src/postgrest/client.ts';
import { interpretResponse, parseRetryAfter } from '../../src/postgrest/client.ts';
import { encodeEnqueueBody } from '../../src/postgrest/request-body.ts';

/** What PostgREST would see: the parsed body, with the bytea hex text turned back into bytes. */
function decodeBody(body: string): { readonly fields: Record<string, unknown>; readonly payload?: Buffer } {
  const fields = JSON.parse(body) as Record<string, unknown>;
  const hex = fields.payload;
  if (typeof hex !== 'string') return { fields };
  assert.match(hex, /^\\x([0-9a-f]{2})*$/, 'payload is bytea hex input text');
  return { fields, payload: Buffer.from(hex.slice(2), 'hex') };
}

describe('encodeEnqueueBody', () => {
  it('sends only the entrypoint when nothing else is set, so the SQL defaults apply', () => {
    assert.equal(encodeEnqueueBody({ entrypoint: 'e' }), '{"entrypoint":"e"}');
  });

  it('sends all six arguments with bytes as bytea hex and headers as their raw text', () => {
    const body = encodeEnqueueBody({
      entrypoint: 'full',
      payload: Buffer.from('hello'),
      priority: 5,
      executeAfter: '10 seconds',
      dedupeKey: 'k1',
      headersJson: '{ "trace" : "abc" }',
    });
    assert.equal(
      body,
      '{"entrypoint":"full","payload":"\\\\x68656c6c6f","priority":5,"execute_after":"10 seconds",' +
        '"dedupe_key":"k1","headers":{ "trace" : "abc" }}',
    );
    assert.deepEqual(JSON.parse(body), {
      entrypoint: 'full',
      payload: '\\x68656c6c6f',
      priority: 5,
      execute_after: '10 seconds',
      dedupe_key: 'k1',
      headers: { trace: 'abc' },
    });
  });

  it('leaves out each optional argument that is absent', () => {
    const cases: ReadonlyArray<readonly [EnqueueArgs, readonly string[]]> = [
      [{ entrypoint: 'e', priority: 0 }, ['entrypoint', 'priority']],
      [{ entrypoint: 'e', payload: Buffer.alloc(0) }, ['entrypoint', 'payload']],
      [{ entrypoint: 'e', executeAfter: 'PT10S' }, ['entrypoint', 'execute_after']],
      [{ entrypoint: 'e', dedupeKey: 'k' }, ['entrypoint', 'dedupe_key']],
      [{ entrypoint: 'e', headersJson: '{}' }, ['entrypoint', 'headers']],
    ];
    for (const [args, keys] of cases) {
      const fields = JSON.parse(encodeEnqueueBody(args)) as Record<string, unknown>;
      assert.deepEqual(Object.keys(fields), keys);
      for (const value of Object.values(fields)) assert.notEqual(value, null);
    }
  });

  it('round-trips every byte value through the hex payload', () => {
    const bytes = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
    const { payload } = decodeBody(encodeEnqueueBody({ entrypoint: 'e', payload: bytes }));
    assert.ok(payload?.equals(bytes));
  });

  it('round-trips binary payloads with NUL and 0xFF bytes', () => {
    for (const bytes of [
      Buffer.from([0x00]),
      Buffer.from([0xff, 0x00, 0xff]),
      Buffer.from('\\x00', 'latin1'),
    ]) {
      const { payload } = decodeBody(encodeEnqueueBody({ entrypoint: 'e', payload: bytes }));
      assert.ok(payload?.equals(bytes), bytes.toString('hex'));
    }
  });

  it('sends an empty payload as empty bytea, not as null', () => {
    const body = encodeEnqueueBody({ entrypoint: 'e', payload: Buffer.alloc(0) });
    assert.equal(body, '{"entrypoint":"e","payload":"\\\\x"}');
    assert.equal(decodeBody(body).payload?.length, 0);
  });

  it('round-trips a 1 MiB payload', () => {
    const bytes = randomBytes(1024 * 1024);
    const { payload } = decodeBody(encodeEnqueueBody({ entrypoint: 'big', payload: bytes }));
    assert.ok(payload?.equals(bytes));
  });

  it('escapes text arguments so the body stays valid JSON', () => {
    const entrypoint = 'quote" backslash\\ newline\n tab\t café 😀 \u2028';
    const dedupeKey = '{"not":"json"}\\x00';
    const executeAfter = '1 day "2" hours';
    const { fields } = decodeBody(encodeEnqueueBody({ entrypoint, dedupeKey, executeAfter }));
    assert.deepEqual(fields, { entrypoint, dedupe_key: dedupeKey, execute_after: executeAfter });
  });

  it('keeps big integers in headers exact', () => {
    const headersJson = '{"id":12345678901234567890,"nested":{"n":9007199254740993}}';
    const body = encodeEnqueueBody({ entrypoint: 'e', headersJson });
    assert.ok(body.endsWith(`,"headers":${headersJson}}`));
    assert.doesNotThrow(() => JSON.parse(body));
  });

  it('writes priorities at both ends of the int4 range as JSON integers', () => {
    for (const priority of [-2_147_483_648, -1, 0, 2_147_483_647]) {
      const body = encodeEnqueueBody({ entrypoint: 'e', priority });
      assert.equal(body, `{"entrypoint":"e","priority":${priority}}`);
    }
  });
});

describe('encodeEnqueueBody with a message identity', () => {
  it('sends message_id first, for the _once function', () => {
    assert.equal(
      encodeEnqueueBody({ entrypoint: 'e', messageId: 'm-"1"', dedupeKey: 'k' }),
      '{"message_id":"m-\\"1\\"","entrypoint":"e","dedupe_key":"k"}',
    );
  });
});

describe('interpretResponse', () => {
  it('reads the job id of a 200', () => {
    assert.deepEqual(interpretResponse(200, '17', undefined), { kind: 'enqueued', jobId: '17' });
  });

  it('keeps a BIGINT id above 2^53 exact', () => {
    assert.deepEqual(interpretResponse(200, '9007199254740993', undefined), {
      kind: 'enqueued',
      jobId: '9007199254740993',
    });
  });

  it('tolerates whitespace around the id', () => {
    assert.deepEqual(interpretResponse(200, ' 42\n', undefined), { kind: 'enqueued', jobId: '42' });
  });

  it('reads the ledger variant’s answer, a replay with its first job id kept exact', () => {
    assert.deepEqual(interpretResponse(200, '{"id": 17, "replayed": false}', undefined), {
      kind: 'enqueued',
      jobId: '17',
    });
    assert.deepEqual(interpretResponse(200, '{"id":9007199254740993,"replayed":true}', undefined), {
      kind: 'enqueued',
      jobId: '9007199254740993',
      replayed: true,
    });
  });

  const notAnId = [
    'null',
    '',
    '"17"',
    '[20, 21]',
    '{"id":17}',
    '{"id": 17, "replayed": "yes"}',
    '17.5',
    'true',
    '<html>ok</html>',
  ];
  for (const body of notAnId) {
    it(`treats a 2xx with body ${JSON.stringify(body)} as a bad response`, () => {
      const result = interpretResponse(200, body, undefined);
      assert.equal(result.kind, 'bad_response');
      assert.equal(result.kind === 'bad_response' && result.status, 200);
    });
  }

  it('treats a 204 (a void function) as a bad response', () => {
    const result = interpretResponse(204, '', undefined);
    assert.equal(result.kind, 'bad_response');
    assert.equal(result.kind === 'bad_response' && result.status, 204);
  });

  it('reads a v14 error body', () => {
    const body =
      '{"code":"23505","details":"Key (dedupe_key)=(K) already exists.","hint":null,' +
      '"message":"duplicate key value violates unique constraint \\"pgqueuer_unique_dedupe_key\\""}';
    assert.deepEqual(interpretResponse(409, body, undefined), {
      kind: 'http_error',
      status: 409,
      code: '23505',
      message: 'duplicate key value violates unique constraint "pgqueuer_unique_dedupe_key"',
      details: 'Key (dedupe_key)=(K) already exists.',
      hint: null,
      retryAfterMs: 0,
    } satisfies RpcResult);
  });

  it('reads an error body whatever the key order (10.1.2 and v14 differ)', () => {
    const body = '{"message":"bad","hint":"try again","code":"P0001","details":"entrypoint x"}';
    assert.deepEqual(interpretResponse(400, body, undefined), {
      kind: 'http_error',
      status: 400,
      code: 'P0001',
      message: 'bad',
      details: 'entrypoint x',
      hint: 'try again',
      retryAfterMs: 0,
    } satisfies RpcResult);
  });

  it('reads an error body without details and hint (v16 minimal verbosity)', () => {
    assert.deepEqual(
      interpretResponse(404, '{"code":"PGRST202","message":"Could not find the function"}', undefined),
      {
        kind: 'http_error',
        status: 404,
        code: 'PGRST202',
        message: 'Could not find the function',
        details: null,
        hint: null,
        retryAfterMs: 0,
      } satisfies RpcResult,
    );
  });

  it('reads the Retry-After of a 503', () => {
    const body =
      '{"code":"PGRST000","details":"Connection refused","hint":null,"message":"Database connection error."}';
    assert.deepEqual(interpretResponse(503, body, '2'), {
      kind: 'http_error',
      status: 503,
      code: 'PGRST000',
      message: 'Database connection error.',
      details: 'Connection refused',
      hint: null,
      retryAfterMs: 2000,
    } satisfies RpcResult);
  });

  it('gives code null for a proxy page that is not JSON, keeping its text as the message', () => {
    const page = '<html><body><h1>502 Bad Gateway</h1></body></html>';
    assert.deepEqual(interpretResponse(502, `\n${page}\n`, undefined), {
      kind: 'http_error',
      status: 502,
      code: null,
      message: page,
      details: null,
      hint: null,
      retryAfterMs: 0,
    } satisfies RpcResult);
  });

  it('keeps only the start of a large proxy page', () => {
    const result = interpretResponse(413, `<html>${'x'.repeat(10_000)}</html>`, undefined);
    assert.equal(result.kind, 'http_error');
    if (result.kind !== 'http_error') return;
    assert.equal(result.code, null);
    assert.ok(result.message.startsWith('<html>xxx'));
    assert.ok(result.message.length < 1_000, `${result.message.length} characters`);
  });

  it('still says what happened when the error body is empty', () => {
    const result = interpretResponse(502, '', undefined);
    assert.equal(result.kind, 'http_error');
    if (result.kind !== 'http_error') return;
    assert.equal(result.code, null);
    assert.match(result.message, /502/);
  });

  it('gives code null for JSON that is not a PostgREST error (10.1.2 answers {} for a deeper path)', () => {
    for (const body of ['{}', '{"code":42,"message":"x"}', '[]', '"error"', 'null']) {
      const result = interpretResponse(404, body, undefined);
      assert.equal(result.kind, 'http_error', body);
      assert.equal(result.kind === 'http_error' && result.code, null, body);
    }
  });

  it('keeps the 10.1.2 uninterpreted RAISE PGRST code and texts as they came', () => {
    const body =
      '{"code":"PGRST","details":"{\\"status\\":409}","hint":null,' +
      '"message":"{\\"code\\":\\"Q001\\",\\"message\\":\\"queue closed\\"}"}';
    assert.deepEqual(interpretResponse(400, body, undefined), {
      kind: 'http_error',
      status: 400,
      code: 'PGRST',
      message: '{"code":"Q001","message":"queue closed"}',
      details: '{"status":409}',
      hint: null,
      retryAfterMs: 0,
    } satisfies RpcResult);
  });
});

describe('parseRetryAfter', () => {
  const now = Date.parse('2025-01-01T00:00:00Z');
  const cases: ReadonlyArray<readonly [string | undefined, number]> = [
    [undefined, 0],
    ['0', 0],
    ['5', 5_000],
    [' 120 ', 120_000],
    ['3600', 3_600_000],
    ['Wed, 01 Jan 2025 00:00:30 GMT', 30_000],
    ['Wed, 01 Jan 2025 00:10:00 GMT', 600_000],
    ['Tue, 31 Dec 2024 23:59:00 GMT', 0],
    ['Wed, 21 Oct 2015 07:28:00 GMT', 0],
    ['', 0],
    ['soon', 0],
    ['-5', 0],
    ['1.5', 0],
    ['5 seconds', 0],
    ['0x10', 0],
    // Neither delay-seconds nor an HTTP date, though a lenient date parser reads a year in it.
    ['retry in 2099', 0],
  ];
  for (const [value, expected] of cases) {
    it(`${JSON.stringify(value)} → ${expected} ms`, () => {
      assert.equal(parseRetryAfter(value, now), expected);
    });
  }
});
