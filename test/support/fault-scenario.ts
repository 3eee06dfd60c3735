import assert from 'node:assert/strict';
import type { TestContext } from 'node:test';
import type { Environment } from './environment.ts';
import { drainQueue, waitFor } from './rabbit.ts';
import { type Accounting, account, type ScenarioMessage, scenarioMessages } from './scenario.ts';

/**
 * The shape every fault scenario shares: publish a few thousand identifiable messages, disrupt
 * something mid-stream, let the bridge finish, then account for every message by id.
 */

export async function publishScenario(
  env: Environment,
  count: number,
  prefix: string,
  queueArguments: Record<string, unknown> = {},
): Promise<ScenarioMessage[]> {
  const messages = scenarioMessages(count, prefix);
  // The bridge may not have declared the queue yet; declaring it here with the same arguments
  // is idempotent and lets publishing start first.
  const channel = await env.broker.channel();
  await channel.assertQueue(env.queue, { durable: true, arguments: queueArguments });
  await env.broker.publish(
    env.queue,
    messages.map((m) => ({
      body: m.body,
      options: { messageId: m.id, persistent: true, contentType: 'application/json' },
    })),
  );
  return messages;
}

export async function jobTotal(env: Environment): Promise<number> {
  const { rows } = await env.db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM pgqueuer');
  return rows[0]?.n ?? 0;
}

/** Waits until at least `jobs` rows exist, so the disruption lands mid-stream. */
export async function waitForProgress(env: Environment, jobs: number, timeoutMs = 60_000): Promise<void> {
  await waitFor(async () => (await jobTotal(env)) >= jobs, {
    timeoutMs,
    intervalMs: 20,
    message: `${jobs} jobs written`,
  });
}

export interface ScenarioReport extends Accounting {
  readonly seconds: number;
}

/**
 * Waits until every message is accounted for (or the time is up, and then reports what is
 * missing), then until the queue holds nothing ready or unacked. The order matters: for a quorum
 * queue RabbitMQ 3.10's counts come from metrics refreshed every few seconds, so in a short
 * scenario "0 ready, 0 unacked" can be the stale value from when the queue was declared.
 */
export async function finishAndAccount(
  env: Environment,
  messages: readonly ScenarioMessage[],
  startedAt: number,
  timeoutMs = 120_000,
): Promise<ScenarioReport> {
  const deadIds: string[] = [];
  const current = async (): Promise<Accounting> => {
    // A fresh connection each time: the scenario may have closed every connection the test had.
    for (const message of await drainQueue(env.deadLetterQueue, { from: env.amqpUrl })) {
      deadIds.push(String(message.properties.messageId));
    }
    return account(messages, await env.jobCountsByMid(), deadIds);
  };
  await waitFor(async () => (await current()).missing.length === 0, {
    timeoutMs,
    intervalMs: 250,
    message: 'every message to be a job or a dead letter',
  }).catch(() => undefined);
  await env.waitForQueueEmpty(timeoutMs);
  const seconds = (Date.now() - startedAt) / 1000;
  return { ...(await current()), seconds };
}

const reports: { readonly name: string; readonly exactlyOnce: boolean; readonly report: ScenarioReport }[] =
  [];

/**
 * The invariants every scenario must hold, with the counts reported as a test diagnostic. With
 * the ledger (`exactlyOnce`) every message that became a job became exactly one.
 */
export function assertAccounted(
  t: TestContext,
  name: string,
  report: ScenarioReport,
  exactlyOnce = false,
): void {
  reports.push({ name, exactlyOnce, report });
  t.diagnostic(
    `${name}: published ${report.published}, job rows ${report.jobRows}, dead letters ${report.deadLetters}, ` +
      `duplicate jobs ${report.duplicateJobs} (all without a dedupe key), duplicate dead letters ` +
      `${report.duplicateDeadLetters}, ${report.seconds.toFixed(1)} s`,
  );
  if (exactlyOnce) assert.equal(report.duplicateJobs, 0, 'with the ledger, no message became two jobs');
  assert.deepEqual(report.missing, [], 'every message is a job or a dead letter');
  assert.deepEqual(report.validDeadLettered, [], 'no valid message is dead-lettered');
  assert.deepEqual(report.duplicatedWithKey, [], 'no message with a dedupe key became two jobs');
  assert.deepEqual(report.sharedKeyViolations, [], 'one job per shared dedupe key');
  assert.deepEqual(report.unknownRows, [], 'no job that was not published');
}

/** One row per scenario run in this file: lost and duplicates, with the ledger and without. */
export function accountingTable(): string {
  const rows = reports.map(
    ({ name, exactlyOnce, report }) =>
      `| ${name} | ${exactlyOnce ? 'on' : 'off'} | ${report.published} | ${report.missing.length} | ` +
      `${report.duplicateJobs} | ${report.duplicateDeadLetters} | ${report.seconds.toFixed(1)} |`,
  );
  return [
    '| scenario | ledger | published | lost | duplicate jobs | duplicate dead letters | seconds |',
    '|---|---|---|---|---|---|---|',
    ...rows,
  ].join('\n');
}
