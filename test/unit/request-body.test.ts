import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import type { EnqueueArgs } from '../../src/message/args.ts';
import { bulkBody, encodeEnqueueBody, jobBody, writeHex } from '../../src/postgrest/request-body.ts';

/** The body as it was built before bulk bodies were written into one buffer: the reference. */
function reference(args: EnqueueArgs): string {
  let body =
    args.messageId === undefined
      ? `{"entrypoint":${JSON.stringify(args.entrypoint)}`
      : `{"message_id":${JSON.stringify(args.messageId)},"entrypoint":${JSON.stringify(args.entrypoint)}`;
  if (args.payload !== undefined) body += `,"payload":"\\\\x${args.payload.toString('hex')}"`;
  if (args.priority !== undefined) body += `,"priority":${args.priority}`;
  if (args.executeAfter !== undefined) body += `,"execute_after":${JSON.stringify(args.executeAfter)}`;
  if (args.dedupeKey !== undefined) body += `,"dedupe_key":${JSON.stringify(args.dedupeKey)}`;
  if (args.headersJson !== undefined) body += `,"headers":${args.headersJson}`;
  return `${body}}`;
}

const text = fc.string({ unit: 'binary', maxLength: 40 });
const argsArb: fc.Arbitrary<EnqueueArgs> = fc.record(
  {
    entrypoint: text,
    payload: fc.uint8Array({ maxLength: 300 }).map((bytes) => Buffer.from(bytes)),
    priority: fc.integer({ min: -2_147_483_648, max: 2_147_483_647 }),
    executeAfter: text,
    dedupeKey: text,
    headersJson: fc.json().filter((json) => json.startsWith('{')),
    messageId: text,
  },
  { requiredKeys: ['entrypoint'] },
);

describe('request bodies', () => {
  it('writes every job of a bulk body exactly as the single call encodes it, byte for byte', () => {
    fc.assert(
      fc.property(fc.array(argsArb, { maxLength: 8 }), (jobs) => {
        const expected = `{"jobs":[${jobs.map(reference).join(',')}]}`;
        assert.equal(bulkBody(jobs.map(jobBody)).toString('utf8'), expected);
        for (const args of jobs) {
          assert.equal(encodeEnqueueBody(args), reference(args));
          assert.equal(jobBody(args).bytes, Buffer.byteLength(reference(args)));
        }
      }),
    );
  });

  it('writes hex as Buffer does, into the middle of a buffer', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 600 }), (bytes) => {
        const source = Buffer.from(bytes);
        const out = Buffer.alloc(2 * source.length + 4, 0x2e);
        assert.equal(writeHex(source, out, 2), 2 + 2 * source.length);
        assert.equal(out.toString('latin1'), `..${source.toString('hex')}..`);
      }),
    );
  });

  it('writes large payloads (past the native encoder threshold) the same way', () => {
    for (const size of [16 * 1024, 16 * 1024 + 1, 100_003]) {
      const source = Buffer.from(Array.from({ length: size }, (_, i) => (i * 7919) & 0xff));
      const out = Buffer.alloc(2 * size + 4, 0x2e);
      assert.equal(writeHex(source, out, 2), 2 + 2 * size);
      assert.equal(out.toString('latin1'), `..${source.toString('hex')}..`, `size ${size}`);
    }
  });
});
