import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { callBytes } from '../../src/pipeline/footprint.ts';
import { jobBody } from '../../src/postgrest/request-body.ts';

describe('callBytes: what a call holds beyond the message body', () => {
  const MiB = 1024 * 1024;

  it('counts the decoded payload and its request body, which carries it as hex', () => {
    const args = { entrypoint: 'e', payload: Buffer.alloc(MiB), headersJson: '{"a":1}', dedupeKey: 'k' };
    const body = Buffer.alloc(Math.ceil((MiB * 4) / 3) + 50);
    const held = callBytes(body, args);
    assert.ok(held >= MiB + jobBody(args).bytes, `${held} covers the payload and the request body`);
    assert.ok(held < MiB + jobBody(args).bytes + 256, `${held} is not much more than that`);
  });

  it('does not count the payload twice when it is the message body itself (raw mode)', () => {
    const body = Buffer.alloc(MiB);
    const held = callBytes(body, { entrypoint: 'e', payload: body });
    assert.ok(held >= 2 * MiB && held < 2 * MiB + 256);
  });

  it('covers the request body of a job with every field and no payload', () => {
    const args = {
      entrypoint: 'e'.repeat(500),
      executeAfter: '10 seconds',
      dedupeKey: 'k'.repeat(1000),
      headersJson: `{"h":"${'x'.repeat(3000)}"}`,
      messageId: 'm'.repeat(200),
      priority: -2_147_483_648,
    };
    assert.ok(callBytes(Buffer.alloc(10), args) >= jobBody(args).bytes);
  });
});
