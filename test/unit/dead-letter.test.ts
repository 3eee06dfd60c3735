import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { MessageProperties, XDeath } from 'amqplib';
import type { DeadLetterReason, DeadLetterSource } from '../../src/amqp/dead-letter.ts';
import { buildDeadLetter, HEADER_PREFIX } from '../../src/amqp/dead-letter.ts';

const AT = new Date('2025-03-04T05:06:07.089Z');

const X_DEATH: XDeath = {
  count: 1,
  reason: 'rejected',
  queue: 'jobs',
  time: { '!': 'timestamp', value: 1_700_000_000 },
  exchange: '',
  'routing-keys': ['jobs'],
};

function properties(overrides: Partial<MessageProperties> = {}): MessageProperties {
  return {
    contentType: undefined,
    contentEncoding: undefined,
    headers: undefined,
    deliveryMode: undefined,
    priority: undefined,
    correlationId: undefined,
    replyTo: undefined,
    expiration: undefined,
    messageId: undefined,
    timestamp: undefined,
    type: undefined,
    userId: undefined,
    appId: undefined,
    clusterId: undefined,
    ...overrides,
  };
}

function source(props: MessageProperties, content = Buffer.from('{"entrypoint":""}')): DeadLetterSource {
  return {
    content,
    properties: props,
    fields: { exchange: 'orders', routingKey: 'order.created', redelivered: true },
  };
}

const INVALID: DeadLetterReason = {
  kind: 'invalid_message',
  reason: 'invalid_entrypoint',
  message: 'entrypoint must not be empty',
};

const REFUSED: DeadLetterReason = {
  kind: 'rejected_by_rpc',
  reason: '22007',
  message: 'invalid input syntax for type interval: "ten seconds"',
  httpStatus: 400,
  postgrestCode: '22007',
  details: 'some detail',
  hint: 'some hint',
};

describe('buildDeadLetter', () => {
  it('keeps the body and every property except expiration and userId, and is persistent', () => {
    const body = Buffer.from([0x00, 0xff, 0x7b, 0x7d]);
    const original = properties({
      contentType: 'application/json',
      contentEncoding: 'utf-8',
      headers: { 'x-tenant': 'acme', 'x-count': 3, traceparent: '00-ab-cd-01' },
      deliveryMode: 1,
      priority: 7,
      correlationId: 'corr-1',
      replyTo: 'replies',
      expiration: '60000',
      messageId: 'msg-1',
      timestamp: 1_700_000_000,
      type: 'order.created',
      userId: 'publisher',
      appId: 'shop',
    });
    const { content, options } = buildDeadLetter(source(original, body), 'jobs', INVALID, AT);
    assert.ok(content.equals(body));
    assert.deepEqual(options, {
      persistent: true,
      contentType: 'application/json',
      contentEncoding: 'utf-8',
      priority: 7,
      correlationId: 'corr-1',
      replyTo: 'replies',
      messageId: 'msg-1',
      timestamp: 1_700_000_000,
      type: 'order.created',
      appId: 'shop',
      headers: {
        'x-tenant': 'acme',
        'x-count': 3,
        traceparent: '00-ab-cd-01',
        'x-pgq-bridge-error-kind': 'invalid_message',
        'x-pgq-bridge-error-reason': 'invalid_entrypoint',
        'x-pgq-bridge-error-message': 'entrypoint must not be empty',
        'x-pgq-bridge-source-queue': 'jobs',
        'x-pgq-bridge-original-exchange': 'orders',
        'x-pgq-bridge-original-routing-key': 'order.created',
        'x-pgq-bridge-redelivered': true,
        'x-pgq-bridge-failed-at': '2025-03-04T05:06:07.089Z',
      },
    });
  });

  it('sets no property the original did not have', () => {
    const { options } = buildDeadLetter(source(properties()), 'jobs', INVALID, AT);
    assert.deepEqual(Object.keys(options).sort(), ['headers', 'persistent']);
    assert.equal(options.expiration, undefined);
    assert.equal(options.userId, undefined);
  });

  it('is persistent even when the original was transient', () => {
    const { options } = buildDeadLetter(source(properties({ deliveryMode: 1 })), 'jobs', INVALID, AT);
    assert.equal(options.persistent, true);
    assert.notEqual(options.deliveryMode, 1);
  });

  it('carries the HTTP status and PostgREST code, details and hint of an RPC refusal', () => {
    const { options } = buildDeadLetter(source(properties()), 'jobs', REFUSED, AT);
    const headers = options.headers as Record<string, unknown>;
    assert.equal(headers[`${HEADER_PREFIX}error-kind`], 'rejected_by_rpc');
    assert.equal(headers[`${HEADER_PREFIX}error-reason`], '22007');
    assert.equal(
      headers[`${HEADER_PREFIX}error-message`],
      'invalid input syntax for type interval: "ten seconds"',
    );
    assert.equal(headers[`${HEADER_PREFIX}http-status`], 400);
    assert.equal(headers[`${HEADER_PREFIX}postgrest-code`], '22007');
    assert.equal(headers[`${HEADER_PREFIX}postgrest-details`], 'some detail');
    assert.equal(headers[`${HEADER_PREFIX}postgrest-hint`], 'some hint');
  });

  it('leaves out the RPC headers when there is nothing to say', () => {
    const reason: DeadLetterReason = {
      ...REFUSED,
      httpStatus: undefined,
      postgrestCode: null,
      details: null,
      hint: null,
    };
    const { options } = buildDeadLetter(source(properties()), 'jobs', reason, AT);
    const keys = Object.keys(options.headers as Record<string, unknown>);
    for (const name of ['http-status', 'postgrest-code', 'postgrest-details', 'postgrest-hint']) {
      assert.ok(!keys.includes(`${HEADER_PREFIX}${name}`), name);
    }
    assert.equal(keys.length, 8);
  });

  it("records that the delivery was not a redelivery, and the default exchange's empty name", () => {
    const first: DeadLetterSource = {
      content: Buffer.from('x'),
      properties: properties(),
      fields: { exchange: '', routingKey: 'jobs', redelivered: false },
    };
    const headers = buildDeadLetter(first, 'jobs', INVALID, AT).options.headers as Record<string, unknown>;
    assert.equal(headers[`${HEADER_PREFIX}redelivered`], false);
    assert.equal(headers[`${HEADER_PREFIX}original-exchange`], '');
    assert.equal(headers[`${HEADER_PREFIX}original-routing-key`], 'jobs');
  });

  it("replaces a previous dead letter's bridge headers and keeps the rest", () => {
    const original = properties({
      headers: {
        [`${HEADER_PREFIX}error-reason`]: 'old',
        [`${HEADER_PREFIX}http-status`]: 500,
        'x-death': [X_DEATH],
      },
    });
    const headers = buildDeadLetter(source(original), 'jobs', INVALID, AT).options.headers as Record<
      string,
      unknown
    >;
    assert.equal(headers[`${HEADER_PREFIX}error-reason`], 'invalid_entrypoint');
    assert.deepEqual(headers['x-death'], [X_DEATH]);
  });

  it('does not change the original properties', () => {
    const original = properties({ headers: { a: 1 }, expiration: '5000' });
    buildDeadLetter(source(original), 'jobs', REFUSED, AT);
    assert.deepEqual(original.headers, { a: 1 });
    assert.equal(original.expiration, '5000');
  });

  it('keeps texts up to 1024 characters whole', () => {
    const text = 'd'.repeat(1024);
    const reason: DeadLetterReason = { ...REFUSED, message: text, details: text, hint: text };
    const headers = buildDeadLetter(source(properties()), 'q', reason, AT).options.headers as Record<
      string,
      unknown
    >;
    for (const name of ['error-message', 'postgrest-details', 'postgrest-hint']) {
      assert.equal(headers[`${HEADER_PREFIX}${name}`], text, name);
    }
  });

  it('truncates longer texts and marks the cut', () => {
    const reason: DeadLetterReason = {
      ...REFUSED,
      message: 'm'.repeat(100_000),
      details: 'd'.repeat(1025),
      hint: 'h'.repeat(5000),
    };
    const headers = buildDeadLetter(source(properties()), 'q', reason, AT).options.headers as Record<
      string,
      unknown
    >;
    assert.equal(headers[`${HEADER_PREFIX}error-message`], `${'m'.repeat(1024)}…`);
    assert.equal(headers[`${HEADER_PREFIX}postgrest-details`], `${'d'.repeat(1024)}…`);
    assert.equal(headers[`${HEADER_PREFIX}postgrest-hint`], `${'h'.repeat(1024)}…`);
  });

  it('does not cut a character in half when truncating', () => {
    // One ASCII character first, so that the cut falls between the two halves of a surrogate pair.
    const reason: DeadLetterReason = {
      ...REFUSED,
      message: `x${'😀'.repeat(2000)}`,
      details: `y${'😀'.repeat(2000)}`,
    };
    const headers = buildDeadLetter(source(properties()), 'q', reason, AT).options.headers as Record<
      string,
      unknown
    >;
    for (const name of ['error-message', 'postgrest-details']) {
      const value = headers[`${HEADER_PREFIX}${name}`];
      assert.equal(typeof value, 'string');
      assert.ok((value as string).isWellFormed(), `${name} ends in a lone surrogate`);
      assert.ok((value as string).length < 4001, `${name} was truncated`);
    }
  });
});
