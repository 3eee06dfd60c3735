import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseConfig } from '../../src/config/config.ts';
import { createPolicy, entrypointMatcher } from '../../src/message/policy.ts';
import { RateLimiter } from '../../src/resilience/rate-limit.ts';

const base = { amqp: { url: 'amqp://h' }, postgrest: { url: 'http://h' }, sources: [{ queue: 'q' }] };

describe('entrypointMatcher', () => {
  const cases: ReadonlyArray<readonly [readonly string[], string, boolean]> = [
    [['send_email'], 'send_email', true],
    [['send_email'], 'send_emails', false],
    [['report_*'], 'report_daily', true],
    [['report_*'], 'report_', true],
    [['report_*'], 'reports', false],
    [['*_v2'], 'resize_v2', true],
    [['a.b'], 'aXb', false],
    [['a*c*e'], 'abcde', true],
    [['a*c*e'], 'abde', false],
    [[], 'anything', false],
  ];
  for (const [patterns, entrypoint, expected] of cases) {
    it(`${JSON.stringify(patterns)} ${expected ? 'allows' : 'refuses'} ${entrypoint}`, () => {
      assert.equal(entrypointMatcher(patterns)(entrypoint), expected);
    });
  }
});

describe('createPolicy', () => {
  const policy = createPolicy(
    parseConfig({
      ...base,
      policy: { entrypoints: ['ok', 'job_*'], maxPayloadBytes: 4, maxHeadersBytes: 10 },
    }).policy,
  );

  it('lets a message within every limit through', () => {
    assert.equal(
      policy.check({ entrypoint: 'job_x', payload: Buffer.alloc(4), headersJson: '{"a":1}' }),
      undefined,
    );
  });

  const violations: ReadonlyArray<readonly [string, Parameters<typeof policy.check>[0], string]> = [
    ['an entrypoint outside the allowlist', { entrypoint: 'other' }, 'entrypoint_not_allowed'],
    ['a payload over the limit', { entrypoint: 'ok', payload: Buffer.alloc(5) }, 'payload_too_large'],
    ['headers over the limit', { entrypoint: 'ok', headersJson: '{"a":"123456"}' }, 'headers_too_large'],
  ];
  for (const [name, args, reason] of violations) {
    it(`refuses ${name} with reason ${reason}`, () => {
      const error = policy.check(args);
      assert.equal(error?.reason, reason);
      assert.equal(error?.kind, 'invalid_message');
    });
  }

  it('allows any entrypoint and sizes up to the defaults when no policy is configured', () => {
    const open = createPolicy(parseConfig(base).policy);
    assert.equal(open.check({ entrypoint: 'anything', payload: Buffer.alloc(16 * 1024 * 1024) }), undefined);
    assert.equal(
      open.check({ entrypoint: 'x', payload: Buffer.alloc(16 * 1024 * 1024 + 1) })?.reason,
      'payload_too_large',
    );
  });
});

describe('RateLimiter', () => {
  it('allows a one-second burst, then spaces calls by 1/rate', () => {
    let now = 10_000;
    const limiter = new RateLimiter(4, () => now);
    assert.deepEqual(
      [limiter.reserve(), limiter.reserve(), limiter.reserve(), limiter.reserve()],
      [0, 0, 0, 0],
    );
    assert.equal(limiter.reserve(), 0);
    assert.equal(limiter.reserve(), 250);
    assert.equal(limiter.reserve(), 500);
    now += 2000;
    assert.equal(limiter.reserve(), 0, 'a quiet spell restores the burst');
  });
});
