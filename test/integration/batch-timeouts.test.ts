import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { App } from '../../src/app.ts';
import { metricValue, startApp } from '../support/app.ts';
import { type Environment, startEnvironment } from '../support/environment.ts';
import { waitFor } from '../support/rabbit.ts';

/**
 * A slow database in batch mode. A bulk call that outlives the single-call timeout used to be cut
 * off after PostgreSQL had committed it, and retried in full: every retry added a batch of
 * duplicates. Bulk calls have their own budget (`batch.timeoutMs`), and after an ambiguous
 * failure the next bulk call is half the size.
 */

const COUNT = 60;

describe('batch mode against a slow database', () => {
  let env: Environment;
  let app: App;

  before(async () => {
    env = await startEnvironment('batch-slow', { batch: true });
  });

  after(async () => {
    await app?.stop();
    await env?.close();
  });

  async function jobCount(): Promise<number> {
    const { rows } = await env.db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM pgqueuer');
    return rows[0]?.n ?? 0;
  }

  it('waits out a bulk call slower than postgrest.timeoutMs instead of repeating it', async () => {
    // Each call takes 1.5 s: past the single-call timeout, well within the bulk one.
    env.server.setDelay(1_500);
    ({ app } = await startApp(
      env.bridgeConfig({
        top: {
          postgrest: { url: env.server.url, timeoutMs: 1_000 },
          batch: { enabled: true, maxSize: 20, lingerMs: 5, timeoutMs: 20_000 },
        },
      }),
    ));
    const messages = Array.from({ length: COUNT }, (_, i) => ({
      body: JSON.stringify({ entrypoint: 'slow', headers: { mid: `slow-${i}` } }),
    }));
    await env.broker.publish(env.queue, messages);
    await waitFor(async () => (await jobCount()) >= COUNT, { timeoutMs: 60_000, message: `${COUNT} jobs` });
    await env.waitForQueueEmpty(30_000);
    const counts = await env.jobCountsByMid();
    assert.equal(counts.length, COUNT, 'every message became a job');
    assert.deepEqual(
      counts.filter((c) => c.count > 1),
      [],
      'and none twice',
    );
    assert.equal(await metricValue(app, 'pgq_bridge_ambiguous_retries_total'), 0);
  });
});
