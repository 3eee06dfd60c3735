import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { idempotencySchema, onceFunctions } from '../../src/config/idempotency.ts';
import type { DecodeOptions, IncomingMessage } from '../../src/message/args.ts';
import { decodeMessage } from '../../src/message/decode.ts';
import { identify } from '../../src/message/identity.ts';

/** Decoding and identification as the pipeline does them, for an envelope or a raw source. */
function run(message: IncomingMessage, idempotency: unknown, mode: 'envelope' | 'raw' = 'envelope') {
  const config = idempotency === undefined ? undefined : idempotencySchema.parse(idempotency);
  const options: DecodeOptions = {
    mode,
    entrypoint: mode === 'raw' ? 'raw-entry' : undefined,
    entrypointHeader: undefined,
    dedupeKeyFromMessageId: false,
    idempotency: config,
  };
  return identify(decodeMessage(message, options), message, config);
}

const envelope = (fields: Record<string, unknown>, properties: IncomingMessage['properties'] = {}) => ({
  body: Buffer.from(JSON.stringify({ entrypoint: 'e', ...fields })),
  properties,
});

function messageIdOf(result: ReturnType<typeof run>): string | undefined {
  assert.ok(result.ok, result.ok ? '' : result.error.message);
  return result.args.messageId;
}

function refusal(result: ReturnType<typeof run>): { reason: string; message: string } {
  assert.ok(!result.ok, 'expected a refusal');
  return { reason: result.error.reason, message: result.error.message };
}

describe('identify: where a message identity comes from', () => {
  it('takes the AMQP message-id by default', () => {
    assert.equal(messageIdOf(run(envelope({}, { messageId: 'm-1' }), {})), 'm-1');
  });

  it('takes a header, as text or as AMQP longstr bytes', () => {
    const config = { messageId: 'header:x-idempotency-key' };
    assert.equal(messageIdOf(run(envelope({}, { headers: { 'x-idempotency-key': 'h-1' } }), config)), 'h-1');
    const bytes = { headers: { 'x-idempotency-key': Buffer.from('h-2') } };
    assert.equal(messageIdOf(run(envelope({}, bytes), config)), 'h-2');
  });

  it('takes a body field, which an envelope then accepts beside the job fields', () => {
    assert.equal(messageIdOf(run(envelope({ event_id: 'f-1' }), { messageId: 'field:event_id' })), 'f-1');
    const raw = { body: Buffer.from('{"event_id": "f-2", "data": 1}'), properties: {} };
    assert.equal(messageIdOf(run(raw, { messageId: 'field:event_id' }, 'raw')), 'f-2');
  });

  it('still refuses unknown envelope fields, and names the identity field as allowed', () => {
    const { reason, message } = refusal(
      run(envelope({ event_id: 'f', other: 1 }), { messageId: 'field:event_id' }),
    );
    assert.equal(reason, 'unknown_field');
    assert.match(message, /unknown field "other"; allowed: .*, headers, event_id$/);
  });

  it('without idempotency, sets no identity and keeps the envelope strict', () => {
    assert.equal(messageIdOf(run(envelope({}, { messageId: 'm-1' }), undefined)), undefined);
    assert.equal(refusal(run(envelope({ event_id: 'f' }), undefined)).reason, 'unknown_field');
  });

  it('a message without one is enqueued at least once by default, dead-lettered when demanded', () => {
    assert.equal(messageIdOf(run(envelope({}), {})), undefined);
    assert.equal(messageIdOf(run(envelope({}, { messageId: '' }), {})), undefined);
    const raw = { body: Buffer.from('not json'), properties: {} };
    assert.equal(messageIdOf(run(raw, { messageId: 'field:id' }, 'raw')), undefined);
    const demanded = refusal(run(envelope({}), { whenMissing: 'dead_letter' }));
    assert.deepEqual(demanded, {
      reason: 'missing_message_id',
      message: 'the AMQP message-id is missing, and this source enqueues a message only with one',
    });
  });

  it('refuses an identity that is no usable text', () => {
    const config = { messageId: 'field:id' };
    assert.equal(refusal(run(envelope({ id: 7 }), config)).reason, 'invalid_message_id');
    assert.equal(refusal(run(envelope({ id: '  ' }), config)).reason, 'invalid_message_id');
    assert.equal(refusal(run(envelope({ id: 'x'.repeat(1025) }), config)).reason, 'invalid_message_id');
    const header = { headers: { k: Buffer.from([0xff, 0xfe]) } };
    assert.equal(refusal(run(envelope({}, header), { messageId: 'header:k' })).reason, 'invalid_message_id');
  });

  it('leaves a message that failed to decode as it was', () => {
    const broken = { body: Buffer.from('{'), properties: { messageId: 'm' } };
    assert.equal(refusal(run(broken, {})).reason, 'invalid_json');
  });
});

describe('idempotency config', () => {
  it('defaults to the message-id property and at-least-once for messages without one', () => {
    assert.deepEqual(idempotencySchema.parse({}), {
      messageId: { from: 'message-id' },
      whenMissing: 'enqueue',
    });
  });

  it('refuses an identity source it does not know', () => {
    assert.equal(idempotencySchema.safeParse({ messageId: 'header:' }).success, false);
    assert.equal(idempotencySchema.safeParse({ messageId: 'correlation-id' }).success, false);
  });

  it('names the _once functions only when a source uses them', () => {
    const base = { postgrest: { function: 'enq' }, batch: { enabled: true, function: 'enq_bulk' } };
    assert.deepEqual(onceFunctions({ ...base, sources: [{}] }), {});
    const config = idempotencySchema.parse({});
    assert.deepEqual(onceFunctions({ ...base, sources: [{}, { idempotency: config }] }), {
      onceFunction: 'enq_once',
      batchOnceFunction: 'enq_bulk_once',
    });
  });
});
