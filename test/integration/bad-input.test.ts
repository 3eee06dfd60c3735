import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Options } from 'amqplib';
import { BAD_INPUTS, type BadInput } from '../support/bad-inputs.ts';
import { BridgeProcess } from '../support/bridge-process.ts';
import { type Environment, startEnvironment } from '../support/environment.ts';
import { queueCounts, uniqueName, waitFor } from '../support/rabbit.ts';

/**
 * The bad-input corpus sent through a real bridge process, each bad message between two valid
 * ones: every bad one must be dead-lettered with its specific reason, every valid one must become
 * a job, and the bridge must neither crash nor stall.
 */

/** A corpus entry whose expected reason may also be a SQLSTATE from PostgreSQL. */
type Case = Omit<BadInput, 'reason'> & { readonly reason: string };

/** Valid to the bridge, refused by PostgreSQL: dead-lettered with PostgREST's SQLSTATE. */
const REFUSED_BY_DATABASE: readonly Case[] = [
  {
    name: 'interval text PostgreSQL cannot read',
    body: '{"entrypoint":"e","execute_after":"ten seconds"}',
    reason: '22007',
  },
  {
    name: 'interval out of range',
    body: '{"entrypoint":"e","execute_after":"999999999999 years"}',
    reason: '22015',
  },
];

describe('bad-input corpus through the bridge', () => {
  let env: Environment;
  let bridge: BridgeProcess;
  const withMessageIdQueue = uniqueName('pgqb-bad-msgid');
  const rawQueue = uniqueName('pgqb-bad-raw');

  before(async () => {
    env = await startEnvironment('bad_input');
    const config = env.bridgeConfig();
    (config.sources as Array<Record<string, unknown>>).push(
      { queue: withMessageIdQueue, dedupeKeyFromMessageId: true },
      { queue: rawQueue, mode: 'raw', entrypointHeader: 'x-ep' },
    );
    bridge = new BridgeProcess(config);
    await bridge.waitUntilReady();
  });

  after(async () => {
    await bridge?.stop('SIGKILL');
    await env?.broker.deleteQueues(
      withMessageIdQueue,
      `${withMessageIdQueue}.dead`,
      rawQueue,
      `${rawQueue}.dead`,
    );
    await env?.close();
  });

  function queueFor(input: Case): string {
    if (input.options?.mode === 'raw') return rawQueue;
    if (input.options?.dedupeKeyFromMessageId) return withMessageIdQueue;
    return env.queue;
  }

  it(`dead-letters each of ${BAD_INPUTS.length + REFUSED_BY_DATABASE.length} bad messages with its reason and enqueues every valid one around them`, async (t) => {
    const cases: readonly Case[] = [...BAD_INPUTS, ...REFUSED_BY_DATABASE];
    let valid = 0;
    for (const [index, input] of cases.entries()) {
      const queue = queueFor(input);
      const good = (): { body: string; options: Options.Publish } => ({
        body: JSON.stringify({ entrypoint: 'good', headers: { n: valid++ } }),
        options: {},
      });
      const { headers, ...rest } = input.properties ?? {};
      const bad = {
        body: input.body,
        // x-case identifies the message in the dead-letter queue, which keeps the original headers.
        options: { ...(rest as Options.Publish), headers: { ...headers, 'x-case': index } },
      };
      const goodQueue = queue === rawQueue ? env.queue : queue;
      await env.broker.publish(goodQueue, [good()]);
      await env.broker.publish(queue, [bad]);
      await env.broker.publish(goodQueue, [good()]);
    }

    const deadLetterQueues = [env.deadLetterQueue, `${withMessageIdQueue}.dead`, `${rawQueue}.dead`];
    const reasons = new Map<number, string>();
    await waitFor(
      async () => {
        for (const queue of deadLetterQueues) {
          for (const message of await env.broker.drainQueue(queue)) {
            const headers = message.properties.headers ?? {};
            reasons.set(Number(headers['x-case']), String(headers['x-pgq-bridge-error-reason']));
          }
        }
        return reasons.size === cases.length;
      },
      { timeoutMs: 60_000, message: () => `all ${cases.length} dead letters (have ${reasons.size})` },
    );
    for (const [index, input] of cases.entries()) {
      assert.equal(reasons.get(index), input.reason, `${input.name}`);
    }
    await waitFor(
      async () =>
        (await env.db.pool.query("SELECT count(*)::int AS n FROM pgqueuer WHERE entrypoint = 'good'")).rows[0]
          ?.n === valid,
      { timeoutMs: 30_000, message: `${valid} valid messages as jobs` },
    );
    for (const queue of [env.queue, withMessageIdQueue, rawQueue]) {
      await waitFor(async () => {
        const counts = await queueCounts(queue);
        return counts.ready === 0 && counts.unacked === 0;
      });
    }
    assert.equal(bridge.child.exitCode, null, 'the bridge is still running');
    assert.deepEqual(
      bridge.logs.filter((r) => r.level === 'fatal' || r.level === 'error'),
      [],
      'no error logged while handling bad input',
    );
    t.diagnostic(
      `${cases.length} bad messages dead-lettered with their reasons; ${valid} valid messages enqueued`,
    );
  });
});
