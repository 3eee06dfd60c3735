import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ClassifyContext, Outcome } from '../../src/postgrest/classify.ts';
import { classify } from '../../src/postgrest/classify.ts';
import type { RpcResult } from '../../src/postgrest/client.ts';
import {
  type BackoffPolicy,
  backoffDelay,
  MAX_RETRY_AFTER_MS,
  retryDelay,
} from '../../src/resilience/backoff.ts';

const DEDUPE_INDEX = 'pgqueuer_unique_dedupe_key';
const WITH_KEY: ClassifyContext = { hasDedupeKey: true, dedupeConstraint: DEDUPE_INDEX };
const NO_KEY: ClassifyContext = { hasDedupeKey: false, dedupeConstraint: DEDUPE_INDEX };
/** What a bulk call's failure is classified with: it reports dedupe hits per job, never as 23505. */
const BULK: ClassifyContext = { hasDedupeKey: true, dedupeConstraint: undefined };

function httpError(status: number, code: string | null, retryAfterMs = 0): RpcResult {
  return { kind: 'http_error', status, code, message: 'm', details: null, hint: null, retryAfterMs };
}

/** PostgREST's 409 for a unique violation, as recorded from PostgREST 10.1.2. */
function uniqueViolation(constraint: string): RpcResult {
  return {
    kind: 'http_error',
    status: 409,
    code: '23505',
    message: `duplicate key value violates unique constraint "${constraint}"`,
    details: 'Key (dedupe_key)=(k-1) already exists.',
    hint: null,
    retryAfterMs: 0,
  };
}

function networkError(errno: string, requestSent: boolean): RpcResult {
  return { kind: 'network_error', errno, message: `connect ${errno}`, requestSent };
}

const TRANSIENT: Outcome = { kind: 'transient', retryAfterMs: 0, ambiguous: false };
const REJECTED: Outcome = { kind: 'rejected_by_rpc' };
const ENDPOINT_FAULT: Outcome = { kind: 'endpoint_fault' };
const UNKNOWN: Outcome = { kind: 'unknown' };

type Row = readonly [label: string, result: RpcResult, expected: Outcome, context?: ClassifyContext];

function runTable(rows: readonly Row[]): void {
  for (const [label, result, expected, context] of rows) {
    it(label, () => {
      assert.deepEqual(classify(result, context ?? NO_KEY), expected);
      // The dedupe key only matters for 23505; every other answer means the same either way.
      if (context === undefined && !(result.kind === 'http_error' && result.code === '23505')) {
        assert.deepEqual(classify(result, WITH_KEY), expected);
      }
    });
  }
}

describe('classify: success and duplicates', () => {
  runTable([
    ['200 with a job id → enqueued', { kind: 'enqueued', jobId: '17' }, { kind: 'enqueued', jobId: '17' }],
    [
      '200 with an id above 2^53 → enqueued, id kept',
      { kind: 'enqueued', jobId: '9007199254740993' },
      { kind: 'enqueued', jobId: '9007199254740993' },
    ],
    [
      '409 23505 on the dedupe index, with a dedupe key → duplicate',
      uniqueViolation(DEDUPE_INDEX),
      { kind: 'duplicate' },
      WITH_KEY,
    ],
    // Without a key the dedupe index (partial, on non-null keys) cannot be the one violated.
    ['409 23505 without a dedupe key → not a duplicate', uniqueViolation(DEDUPE_INDEX), UNKNOWN, NO_KEY],
    // The primary key when the id sequence is behind after a restore: nothing was written.
    [
      '409 23505 on another constraint (primary key), with a dedupe key → not a duplicate',
      uniqueViolation('pgqueuer_pkey'),
      UNKNOWN,
      WITH_KEY,
    ],
    ['409 23505 naming no constraint → not a duplicate', httpError(409, '23505'), UNKNOWN, WITH_KEY],
    ['409 23505 from a bulk call → not a duplicate', uniqueViolation(DEDUPE_INDEX), UNKNOWN, BULK],
    [
      'a body that cannot be built → refused for its size',
      { kind: 'body_too_large', message: 'Invalid string length' },
      REJECTED,
    ],
    ['301 from a proxy → endpoint fault', httpError(301, null), ENDPOINT_FAULT],
    ['307 → endpoint fault', httpError(307, null), ENDPOINT_FAULT],
    [
      '2xx whose body is not an id (e.g. null) → endpoint fault',
      { kind: 'bad_response', status: 200, message: 'null' },
      ENDPOINT_FAULT,
    ],
  ]);
});

describe('classify: the message is refused (dead-letter)', () => {
  runTable([
    ['400 22P02 invalid integer/bytea syntax', httpError(400, '22P02'), REJECTED],
    ['400 22003 integer out of range', httpError(400, '22003'), REJECTED],
    ['400 22007 bad interval', httpError(400, '22007'), REJECTED],
    ['400 22008 interval out of range', httpError(400, '22008'), REJECTED],
    ['400 22P05 NUL in text (10.1.2 case 33)', httpError(400, '22P05'), REJECTED],
    ['400 23502 NOT NULL violated', httpError(400, '23502'), REJECTED],
    ['400 23514 CHECK violated', httpError(400, '23514'), REJECTED],
    ['409 23503 foreign key violated', httpError(409, '23503'), REJECTED],
    ['400 P0001 RAISE EXCEPTION in the function', httpError(400, 'P0001'), REJECTED],
    ['400 PGRST102 body refused', httpError(400, 'PGRST102'), REJECTED],
    ['500 22001 string too long', httpError(500, '22001'), REJECTED],
    ['500 22012 division by zero', httpError(500, '22012'), REJECTED],
    ['500 23514 CHECK violated', httpError(500, '23514'), REJECTED],
    ['500 54000 program limit exceeded', httpError(500, '54000'), REJECTED],
    ['500 54001 statement too complex', httpError(500, '54001'), REJECTED],
    ['413 from a proxy (not JSON)', httpError(413, null), REJECTED],
    ['413 54000 (PostgREST before 12.2)', httpError(413, '54000'), REJECTED],
    ['402 PT402 raised by the function', httpError(402, 'PT402'), REJECTED],
    ['418 PT418 raised by the function', httpError(418, 'PT418'), REJECTED],
    ['422 PT422 raised by the function', httpError(422, 'PT422'), REJECTED],
    ['409 PT409 raised by the function', httpError(409, 'PT409'), REJECTED],
  ]);
});

describe('classify: the endpoint or configuration is wrong (pause, never dead-letter)', () => {
  runTable([
    ['404 PGRST202 function not in the schema cache', httpError(404, 'PGRST202'), ENDPOINT_FAULT],
    ['404 42883 stale schema cache after a parameter rename', httpError(404, '42883'), ENDPOINT_FAULT],
    ['300 PGRST203 ambiguous overload', httpError(300, 'PGRST203'), ENDPOINT_FAULT],
    ['404 PGRST125 bad path', httpError(404, 'PGRST125'), ENDPOINT_FAULT],
    ['404 with body {} (10.1.2 deeper path)', httpError(404, null), ENDPOINT_FAULT],
    ['401 42501 anonymous role lacks EXECUTE', httpError(401, '42501'), ENDPOINT_FAULT],
    ['403 42501 role lacks a table grant', httpError(403, '42501'), ENDPOINT_FAULT],
    ['401 PGRST301 bad or expired JWT (10.1.2)', httpError(401, 'PGRST301'), ENDPOINT_FAULT],
    ['401 PGRST302 anonymous access disabled', httpError(401, 'PGRST302'), ENDPOINT_FAULT],
    ['401 PGRST303 JWT expired (v14)', httpError(401, 'PGRST303'), ENDPOINT_FAULT],
    ['400 22023 role does not exist (10.1.2)', httpError(400, '22023'), ENDPOINT_FAULT],
    ['401 22023 role does not exist (v14)', httpError(401, '22023'), ENDPOINT_FAULT],
    ['405 25006 read-only transaction', httpError(405, '25006'), ENDPOINT_FAULT],
    ['405 PGRST101 wrong method', httpError(405, 'PGRST101'), ENDPOINT_FAULT],
    ['406 PGRST106 schema not exposed', httpError(406, 'PGRST106'), ENDPOINT_FAULT],
    ['406 PGRST107 media type (v14)', httpError(406, 'PGRST107'), ENDPOINT_FAULT],
    ['415 PGRST107 media type (10.1.2)', httpError(415, 'PGRST107'), ENDPOINT_FAULT],
    ['400 PGRST122 strict preferences', httpError(400, 'PGRST122'), ENDPOINT_FAULT],
    ['500 PGRST300 server lacks a JWT secret', httpError(500, 'PGRST300'), ENDPOINT_FAULT],
    ['403 28000 invalid authorization', httpError(403, '28000'), ENDPOINT_FAULT],
    ['401 PT401 raised by the function', httpError(401, 'PT401'), ENDPOINT_FAULT],
    ['403 PT403 raised by the function', httpError(403, 'PT403'), ENDPOINT_FAULT],
    ['404 PT404 raised by the function', httpError(404, 'PT404'), ENDPOINT_FAULT],
    ['401 from a proxy (not JSON)', httpError(401, null), ENDPOINT_FAULT],
    ['403 from a proxy (not JSON)', httpError(403, null), ENDPOINT_FAULT],
  ]);

  const tlsErrnos = [
    'CERT_HAS_EXPIRED',
    'DEPTH_ZERO_SELF_SIGNED_CERT',
    'ERR_TLS_CERT_ALTNAME_INVALID',
    'SELF_SIGNED_CERT_IN_CHAIN',
    'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
    'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
    'CERT_NOT_YET_VALID',
    'CERT_SIGNATURE_FAILURE',
    'CERT_REVOKED',
    'UNABLE_TO_GET_ISSUER_CERT',
  ];
  for (const errno of tlsErrnos) {
    it(`TLS failure ${errno} → endpoint fault`, () => {
      assert.deepEqual(classify(networkError(errno, false), NO_KEY), ENDPOINT_FAULT);
    });
  }
});

describe('classify: transient (hold, back off, retry)', () => {
  runTable([
    ['503 PGRST000 cannot connect to the database', httpError(503, 'PGRST000'), TRANSIENT],
    ['503 PGRST001 pooled connection broke', httpError(503, 'PGRST001'), TRANSIENT],
    ['503 PGRST002 schema cache not loaded', httpError(503, 'PGRST002'), TRANSIENT],
    ['504 PGRST003 pool acquisition timeout', httpError(504, 'PGRST003'), TRANSIENT],
    ['500 57P01 admin shutdown (10.1.2)', httpError(500, '57P01'), TRANSIENT],
    ['503 57P01 admin shutdown (v14)', httpError(503, '57P01'), TRANSIENT],
    ['500 57P02 crash shutdown', httpError(500, '57P02'), TRANSIENT],
    ['500 57P03 cannot connect now', httpError(500, '57P03'), TRANSIENT],
    ['500 40001 serialization failure (v16)', httpError(500, '40001'), TRANSIENT],
    ['500 40P01 deadlock', httpError(500, '40P01'), TRANSIENT],
    ['500 57014 statement timeout', httpError(500, '57014'), TRANSIENT],
    ['500 55P03 lock not available', httpError(500, '55P03'), TRANSIENT],
    ['503 53300 too many connections', httpError(503, '53300'), TRANSIENT],
    ['500 53400 configuration limit', httpError(500, '53400'), TRANSIENT],
    ['503 08006 connection failure', httpError(503, '08006'), TRANSIENT],
    ['429 PT429 raised by the function', httpError(429, 'PT429'), TRANSIENT],
    ['429 from a proxy', httpError(429, null), TRANSIENT],
    ['503 PT503 raised by the function', httpError(503, 'PT503'), TRANSIENT],
    ['408 request timeout', httpError(408, null), TRANSIENT],
    [
      '429 with Retry-After → that delay',
      httpError(429, 'PT429', 30_000),
      { kind: 'transient', retryAfterMs: 30_000, ambiguous: false },
    ],
    [
      '503 PGRST000 with the 10.1.2 back-off in Retry-After',
      httpError(503, 'PGRST000', 2_000),
      { kind: 'transient', retryAfterMs: 2_000, ambiguous: false },
    ],
    [
      '500 40001 with Retry-After',
      httpError(500, '40001', 1_000),
      { kind: 'transient', retryAfterMs: 1_000, ambiguous: false },
    ],
  ]);

  // A proxy's answer says nothing about whether PostgREST ran the call, so only the kind and delay are pinned.
  for (const [status, retryAfterMs] of [
    [502, 0],
    [503, 0],
    [504, 0],
    [502, 5_000],
  ] as const) {
    it(`${status} from a proxy (not JSON)${retryAfterMs > 0 ? ' with Retry-After' : ''} → transient`, () => {
      const outcome = classify(httpError(status, null, retryAfterMs), NO_KEY);
      assert.equal(outcome.kind, 'transient');
      assert.equal(outcome.kind === 'transient' && outcome.retryAfterMs, retryAfterMs);
    });
  }

  const network: ReadonlyArray<readonly [string, boolean]> = [
    ['ECONNREFUSED', false],
    ['ENOTFOUND', false],
    ['EAI_AGAIN', false],
    ['ETIMEDOUT', false],
    ['TIMEOUT', false],
    ['ECONNRESET', false],
    ['ECONNRESET', true],
    ['EPIPE', true],
    ['TIMEOUT', true],
    ['UNKNOWN', true],
  ];
  for (const [errno, requestSent] of network) {
    it(`network ${errno}, request ${requestSent ? 'sent' : 'not sent'} → transient, ambiguous ${requestSent}`, () => {
      const expected: Outcome = { kind: 'transient', retryAfterMs: 0, ambiguous: requestSent };
      assert.deepEqual(classify(networkError(errno, requestSent), NO_KEY), expected);
      assert.deepEqual(classify(networkError(errno, requestSent), WITH_KEY), expected);
    });
  }
});

describe('classify: unknown (retry; dead-letter only if it keeps failing for this message)', () => {
  runTable([
    ['500 XX000 internal error', httpError(500, 'XX000'), UNKNOWN],
    ['500 XX001 data corrupted', httpError(500, 'XX001'), UNKNOWN],
    ['500 P0004 assert failure', httpError(500, 'P0004'), UNKNOWN],
    ['500 58030 I/O error', httpError(500, '58030'), UNKNOWN],
    ['500 from a proxy (not JSON)', httpError(500, null), UNKNOWN],
    ['500 PT500 raised by the function', httpError(500, 'PT500'), UNKNOWN],
    ['400 PGRST: a RAISE PGRST that 10.1.2 did not interpret', httpError(400, 'PGRST'), UNKNOWN],
  ]);
});

describe('backoffDelay', () => {
  const policy: BackoffPolicy = { initialDelayMs: 100, maxDelayMs: 10_000 };
  const rows: ReadonlyArray<readonly [attempt: number, random: number, expected: number]> = [
    [0, 0, 0],
    [5, 0, 0],
    [50, 0, 0],
    [0, 0.5, 50],
    [1, 0.5, 100],
    [2, 0.5, 200],
    [3, 0.5, 400],
    [6, 0.5, 3_200],
    [7, 0.5, 5_000], // 12 800 capped at 10 000
    [30, 0.5, 5_000],
    [1_000, 0.5, 5_000],
    [0, 0.999_999, 99],
    [1, 0.999_999, 199],
    [2, 0.999_999, 399],
    [6, 0.999_999, 6_399],
    [7, 0.999_999, 9_999],
    [1_000_000, 0.999_999, 9_999],
  ];
  for (const [attempt, random, expected] of rows) {
    it(`attempt ${attempt}, random ${random} → ${expected} ms`, () => {
      assert.equal(
        backoffDelay(attempt, policy, () => random),
        expected,
      );
    });
  }

  it('stays in [0, ceiling) and grows with the attempt for any draw', () => {
    for (const random of [0, 0.1, 0.5, 0.9, 0.999_999_999]) {
      let previous = -1;
      for (let attempt = 0; attempt <= 40; attempt++) {
        const delay = backoffDelay(attempt, policy, () => random);
        const ceiling = Math.min(policy.maxDelayMs, policy.initialDelayMs * 2 ** attempt);
        assert.ok(Number.isInteger(delay), `${delay}`);
        assert.ok(delay >= 0 && delay < ceiling, `attempt ${attempt}: ${delay} not in [0, ${ceiling})`);
        assert.ok(delay >= previous, `attempt ${attempt}: ${delay} < ${previous}`);
        previous = delay;
      }
    }
  });

  it('uses Math.random by default and stays inside the cap', () => {
    for (let i = 0; i < 200; i++) {
      const delay = backoffDelay(20, policy);
      assert.ok(delay >= 0 && delay < policy.maxDelayMs, `${delay}`);
    }
  });

  it('gives 0 when the initial delay is 0', () => {
    assert.equal(
      backoffDelay(10, { initialDelayMs: 0, maxDelayMs: 1_000 }, () => 0.9),
      0,
    );
  });
});

describe('retryDelay', () => {
  const policy: BackoffPolicy = { initialDelayMs: 100, maxDelayMs: 10_000 };
  const rows: ReadonlyArray<
    readonly [attempt: number, retryAfterMs: number, random: number, expected: number]
  > = [
    [0, 0, 0.5, 50], // no Retry-After: the backoff alone
    [3, 0, 0.999_999, 799],
    [0, 2_000, 0.5, 2_000], // the server asked for longer than the backoff
    [0, 2_000, 0, 2_000],
    [7, 2_000, 0.5, 5_000], // the backoff is already longer than asked
    [7, 60_000, 0.999_999, 60_000], // above maxDelayMs, still honoured
    [0, MAX_RETRY_AFTER_MS, 0, MAX_RETRY_AFTER_MS],
    [0, MAX_RETRY_AFTER_MS + 1, 0, MAX_RETRY_AFTER_MS], // capped
    [0, 24 * 3_600_000, 0.5, MAX_RETRY_AFTER_MS],
  ];
  for (const [attempt, retryAfterMs, random, expected] of rows) {
    it(`attempt ${attempt}, Retry-After ${retryAfterMs} ms, random ${random} → ${expected} ms`, () => {
      assert.equal(
        retryDelay(attempt, policy, retryAfterMs, () => random),
        expected,
      );
    });
  }

  it('caps Retry-After at five minutes', () => {
    assert.equal(MAX_RETRY_AFTER_MS, 300_000);
  });
});
