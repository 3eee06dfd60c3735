import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { EnqueueArgs } from '../../src/message/decode.ts';
import { Batcher, type BatchItemResult, type BatchTransport } from '../../src/postgrest/batcher.ts';
import { interpretBatchResponse, type RpcResult } from '../../src/postgrest/client.ts';

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

/** A bulk function stand-in: ids from 1, duplicates by key, refuses any batch holding a "bad" job. */
function fakeTransport(answer?: RpcResult): BatchTransport & { calls: string[][] } {
  let next = 1;
  const seen = new Set<string>();
  const calls: string[][] = [];
  return {
    calls,
    async postBatch(jobs: readonly EnqueueArgs[]) {
      calls.push(jobs.map((j) => j.entrypoint));
      if (answer !== undefined) return answer;
      if (jobs.some((j) => j.entrypoint === 'bad')) return refused;
      return jobs.map((j): BatchItemResult => {
        if (j.dedupeKey !== undefined && seen.has(j.dedupeKey)) return 'duplicate';
        if (j.dedupeKey !== undefined) seen.add(j.dedupeKey);
        return { id: String(next++) };
      });
    },
  };
}

describe('Batcher', () => {
  it('groups calls that arrive together into one bulk call and answers each in order', async () => {
    const transport = fakeTransport();
    const batcher = new Batcher(transport, { maxSize: 10, lingerMs: 5, concurrency: 1 });
    const results = await Promise.all(
      ['a', 'b', 'c'].map((e, i) =>
        batcher.enqueue({ entrypoint: e, ...(i === 2 ? { dedupeKey: 'k' } : {}) }),
      ),
    );
    assert.deepEqual(transport.calls, [['a', 'b', 'c']]);
    assert.deepEqual(results, [
      { kind: 'enqueued', jobId: '1' },
      { kind: 'enqueued', jobId: '2' },
      { kind: 'enqueued', jobId: '3' },
    ]);
  });

  it('sends a full batch at once and starts the next', async () => {
    const transport = fakeTransport();
    const batcher = new Batcher(transport, { maxSize: 2, lingerMs: 10_000, concurrency: 2 });
    const results = await Promise.all(['a', 'b', 'c', 'd'].map((e) => batcher.enqueue({ entrypoint: e })));
    assert.deepEqual(transport.calls, [
      ['a', 'b'],
      ['c', 'd'],
    ]);
    assert.equal(results.length, 4);
  });

  it('reports a key already taken as a duplicate', async () => {
    const batcher = new Batcher(fakeTransport(), { maxSize: 10, lingerMs: 1, concurrency: 1 });
    const results = await Promise.all([
      batcher.enqueue({ entrypoint: 'a', dedupeKey: 'same' }),
      batcher.enqueue({ entrypoint: 'b', dedupeKey: 'same' }),
    ]);
    assert.deepEqual(results, [{ kind: 'enqueued', jobId: '1' }, { kind: 'duplicate' }]);
  });

  it('splits a batch PostgreSQL refuses until the bad job is alone, and enqueues the rest', async () => {
    const transport = fakeTransport();
    const batcher = new Batcher(transport, { maxSize: 8, lingerMs: 1, concurrency: 1 });
    const names = ['a', 'b', 'c', 'bad', 'e', 'f', 'g', 'h'];
    const results = await Promise.all(names.map((e) => batcher.enqueue({ entrypoint: e })));
    assert.deepEqual(results[3], refused);
    assert.deepEqual(results.filter((r) => r.kind === 'enqueued').length, 7, 'every other job is enqueued');
    assert.deepEqual(transport.calls.at(-1), ['bad']);
  });

  it('gives every member the failure of a batch that failed for any other reason', async () => {
    const transport = fakeTransport(unavailable);
    const batcher = new Batcher(transport, { maxSize: 4, lingerMs: 1, concurrency: 1 });
    const results = await Promise.all(['a', 'b', 'c'].map((e) => batcher.enqueue({ entrypoint: e })));
    assert.deepEqual(results, [unavailable, unavailable, unavailable]);
    assert.equal(transport.calls.length, 1, 'not split: it is not about one element');
  });

  it('treats a result count that does not match the batch as a bad response for every member', async () => {
    const batcher = new Batcher(
      { postBatch: async () => [{ id: '1' }] },
      { maxSize: 4, lingerMs: 1, concurrency: 1 },
    );
    const results = await Promise.all(['a', 'b'].map((e) => batcher.enqueue({ entrypoint: e })));
    assert.ok(results.every((r) => r.kind === 'bad_response'));
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
