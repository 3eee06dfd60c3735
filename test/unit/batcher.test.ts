import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Batcher, type BatchTransport } from '../../src/postgrest/batcher.ts';
import { type BatchItemResult, interpretBatchResponse, type RpcResult } from '../../src/postgrest/client.ts';
import { type Attempt, NOT_SENT } from '../../src/postgrest/enqueuer.ts';

const refused: RpcResult = {
  kind: 'http_error',
  status: 400,
  code: '22007',
  message: 'invalid input syntax for type interval: "bad"',
  details: null,
  hint: null,
  retryAfterMs: 0,
};
const unavailable: RpcResult = {
  ...refused,
  status: 503,
  code: 'PGRST000',
  message: 'Database connection error.',
};
const timedOut: RpcResult = {
  kind: 'network_error',
  errno: 'TIMEOUT',
  message: 'no response',
  requestSent: true,
};
const uniqueViolation: RpcResult = {
  ...refused,
  status: 409,
  code: '23505',
  message: 'duplicate key value violates unique constraint "pgqueuer_unique_dedupe_key"',
};

const OPTIONS = { maxSize: 10, lingerMs: 1, concurrency: 1, maxBytes: 1024 * 1024 };
const always = (): boolean => true;

/** A bulk function stand-in: ids from 1, duplicates by key, refuses any batch holding a "bad" job. */
function fakeTransport(
  answer?: (jobs: readonly { entrypoint: string; dedupeKey: string | undefined }[]) => RpcResult | undefined,
): BatchTransport & { calls: string[][] } {
  let next = 1;
  const seen = new Set<string>();
  const calls: string[][] = [];
  return {
    calls,
    async postBatch(body: Buffer) {
      const parsed = JSON.parse(body.toString('utf8')) as {
        jobs: { entrypoint: string; dedupe_key?: string }[];
      };
      const jobs = parsed.jobs.map((job) => ({ entrypoint: job.entrypoint, dedupeKey: job.dedupe_key }));
      calls.push(jobs.map((j) => j.entrypoint));
      const fixed = answer?.(jobs);
      if (fixed !== undefined) return fixed;
      if (jobs.some((j) => j.entrypoint === 'bad')) return refused;
      return jobs.map((j): BatchItemResult => {
        if (j.dedupeKey !== undefined && seen.has(j.dedupeKey)) return 'duplicate';
        if (j.dedupeKey !== undefined) seen.add(j.dedupeKey);
        return { id: String(next++) };
      });
    },
  };
}

function attempt(result: Attempt | typeof NOT_SENT): Attempt {
  assert.notEqual(result, NOT_SENT);
  return result as Attempt;
}

describe('Batcher', () => {
  it('groups calls that arrive together into one bulk call and answers each in order', async () => {
    const transport = fakeTransport();
    const batcher = new Batcher(transport, { ...OPTIONS, lingerMs: 5 });
    const results = await Promise.all(
      ['a', 'b', 'c'].map((e, i) =>
        batcher.enqueue({ entrypoint: e, ...(i === 2 ? { dedupeKey: 'k' } : {}) }, always),
      ),
    );
    assert.deepEqual(transport.calls, [['a', 'b', 'c']]);
    assert.deepEqual(
      results.map((r) => attempt(r).outcome),
      [
        { kind: 'enqueued', jobId: '1' },
        { kind: 'enqueued', jobId: '2' },
        { kind: 'enqueued', jobId: '3' },
      ],
    );
  });

  it('sends a full batch at once and starts the next', async () => {
    const transport = fakeTransport();
    const batcher = new Batcher(transport, { ...OPTIONS, maxSize: 2, lingerMs: 10_000, concurrency: 2 });
    const results = await Promise.all(
      ['a', 'b', 'c', 'd'].map((e) => batcher.enqueue({ entrypoint: e }, always)),
    );
    assert.deepEqual(transport.calls, [
      ['a', 'b'],
      ['c', 'd'],
    ]);
    assert.equal(results.length, 4);
  });

  it('reports a key already taken as a duplicate', async () => {
    const batcher = new Batcher(fakeTransport(), OPTIONS);
    const results = await Promise.all([
      batcher.enqueue({ entrypoint: 'a', dedupeKey: 'same' }, always),
      batcher.enqueue({ entrypoint: 'b', dedupeKey: 'same' }, always),
    ]);
    assert.deepEqual(
      results.map((r) => attempt(r).outcome),
      [{ kind: 'enqueued', jobId: '1' }, { kind: 'duplicate' }],
    );
  });

  it('reports an element the ledger knew as replayed, with its first job id', async () => {
    const transport: BatchTransport = {
      postBatch: async () =>
        interpretBatchResponse(200, '[{"id": 7}, {"id": 5, "replayed": true}]', undefined),
    };
    const batcher = new Batcher(transport, OPTIONS);
    const results = await Promise.all([
      batcher.enqueue({ entrypoint: 'a', messageId: 'new' }, always),
      batcher.enqueue({ entrypoint: 'b', messageId: 'seen' }, always),
    ]);
    assert.deepEqual(
      results.map((r) => attempt(r).outcome),
      [
        { kind: 'enqueued', jobId: '7' },
        { kind: 'replayed', jobId: '5' },
      ],
    );
  });

  it('splits a batch PostgreSQL refuses until the bad job is alone, and enqueues the rest', async () => {
    const transport = fakeTransport();
    const batcher = new Batcher(transport, { ...OPTIONS, maxSize: 8 });
    const names = ['a', 'b', 'c', 'bad', 'e', 'f', 'g', 'h'];
    const results = (await Promise.all(names.map((e) => batcher.enqueue({ entrypoint: e }, always)))).map(
      attempt,
    );
    assert.deepEqual(results[3], { outcome: { kind: 'rejected_by_rpc' }, result: refused });
    assert.equal(
      results.filter((r) => r.outcome.kind === 'enqueued').length,
      7,
      'every other job is enqueued',
    );
    assert.deepEqual(transport.calls.at(-1), ['bad']);
  });

  it('gives every member the failure of a batch that failed for any other reason', async () => {
    const transport = fakeTransport(() => unavailable);
    const batcher = new Batcher(transport, { ...OPTIONS, maxSize: 4 });
    const results = (
      await Promise.all(['a', 'b', 'c'].map((e) => batcher.enqueue({ entrypoint: e }, always)))
    ).map(attempt);
    assert.ok(results.every((r) => r.result === unavailable && r.outcome.kind === 'transient'));
    assert.equal(transport.calls.length, 1, 'not split: it is not about one element');
  });

  it('never takes a bulk call failing with 23505 as a duplicate of every member with a key', async () => {
    const batcher = new Batcher(
      fakeTransport(() => uniqueViolation),
      OPTIONS,
    );
    const results = (
      await Promise.all(['a', 'b'].map((e) => batcher.enqueue({ entrypoint: e, dedupeKey: e }, always)))
    ).map(attempt);
    assert.deepEqual(
      results.map((r) => r.outcome.kind),
      ['unknown', 'unknown'],
    );
  });

  it('treats a result count that does not match the batch as a bad response for every member', async () => {
    const batcher = new Batcher({ postBatch: async () => [{ id: '1' }] }, { ...OPTIONS, maxSize: 4 });
    const results = (
      await Promise.all(['a', 'b'].map((e) => batcher.enqueue({ entrypoint: e }, always)))
    ).map(attempt);
    assert.ok(results.every((r) => r.result.kind === 'bad_response' && r.outcome.kind === 'endpoint_fault'));
  });

  it('leaves out members whose delivery is gone by the time the batch is sent', async () => {
    const transport = fakeTransport();
    const batcher = new Batcher(transport, { ...OPTIONS, lingerMs: 5 });
    let bLive = true;
    const pending = [
      batcher.enqueue({ entrypoint: 'a' }, always),
      batcher.enqueue({ entrypoint: 'b' }, () => bLive),
      batcher.enqueue({ entrypoint: 'c' }, always),
    ];
    bLive = false;
    const results = await Promise.all(pending);
    assert.equal(results[1], NOT_SENT);
    assert.deepEqual(transport.calls, [['a', 'c']]);
  });

  it('keeps each request body within maxBytes, sending the rest in the next call', async () => {
    const transport = fakeTransport();
    const batcher = new Batcher(transport, { ...OPTIONS, maxSize: 100, maxBytes: 1024 });
    const payload = Buffer.alloc(200);
    const results = await Promise.all(
      Array.from({ length: 6 }, (_, i) => batcher.enqueue({ entrypoint: `e${i}`, payload }, always)),
    );
    assert.ok(results.every((r) => attempt(r).outcome.kind === 'enqueued'));
    // Each member's body is ~440 bytes (hex doubles the payload): two fit in 1 KiB, three do not.
    assert.deepEqual(
      transport.calls.map((call) => call.length),
      [2, 2, 2],
    );
  });

  it('splits a batch whose body cannot be built instead of retrying it', async () => {
    const transport = fakeTransport((jobs) =>
      jobs.length > 1 ? { kind: 'body_too_large', message: 'Invalid string length' } : undefined,
    );
    const batcher = new Batcher(transport, { ...OPTIONS, maxSize: 4 });
    const results = (
      await Promise.all(['a', 'b', 'c', 'd'].map((e) => batcher.enqueue({ entrypoint: e }, always)))
    ).map(attempt);
    assert.ok(results.every((r) => r.outcome.kind === 'enqueued'));
  });

  it('halves the batch size after an ambiguous failure and grows it back after successes', async () => {
    let fail = true;
    const transport = fakeTransport(() => (fail ? timedOut : undefined));
    const batcher = new Batcher(transport, { ...OPTIONS, maxSize: 8 });
    const send = (n: number) =>
      Promise.all(Array.from({ length: n }, (_, i) => batcher.enqueue({ entrypoint: `e${i}` }, always)));
    const failed = (await send(8)).map(attempt);
    assert.ok(failed.every((r) => r.outcome.kind === 'transient' && r.outcome.ambiguous));
    assert.equal(batcher.size, 4, 'the next attempt repeats at most half as many jobs');
    fail = false;
    await send(8);
    assert.deepEqual(
      transport.calls.slice(1).map((call) => call.length),
      [4, 4],
    );
    assert.equal(batcher.size, 8);
  });
});

describe('interpretBatchResponse', () => {
  it('reads ids with every digit and duplicate markers, in order', () => {
    assert.deepEqual(
      interpretBatchResponse(200, '[{"id": 9007199254740993}, {"duplicate": true}, {"id":2}]', undefined),
      [{ id: '9007199254740993' }, 'duplicate', { id: '2' }],
    );
    assert.deepEqual(interpretBatchResponse(200, '[]', undefined), []);
  });

  it('passes errors through and refuses shapes it does not know', () => {
    const kind = (answer: ReturnType<typeof interpretBatchResponse>): string =>
      'kind' in answer ? answer.kind : 'results';
    const unavailableBody = '{"code":"PGRST000","message":"m","details":null,"hint":null}';
    assert.equal(kind(interpretBatchResponse(503, unavailableBody, '0')), 'http_error');
    assert.equal(kind(interpretBatchResponse(200, '{"id":1}', undefined)), 'bad_response');
    assert.equal(kind(interpretBatchResponse(200, '[{"status":"?"}]', undefined)), 'bad_response');
  });
});
