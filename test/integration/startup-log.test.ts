import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BridgeProcess } from '../support/bridge-process.ts';
import { freePort } from '../support/rabbit-node.ts';

/**
 * The first line the bridge logs tells an operator what it will call. Nothing needs to listen:
 * the line comes before the first connection attempt.
 */
describe('the startup log line', () => {
  for (const [mode, batch, fn] of [
    ['single', { enabled: false }, 'fn_custom_enqueue'],
    ['batch', { enabled: true, function: 'fn_custom_enqueue_batch' }, 'fn_custom_enqueue_batch'],
  ] as const) {
    it(`names the function called in ${mode} mode`, async () => {
      const port = await freePort();
      const bridge = new BridgeProcess({
        amqp: { url: `amqp://guest:guest@127.0.0.1:${port}` },
        postgrest: { url: `http://127.0.0.1:${port}`, function: 'fn_custom_enqueue' },
        batch,
        sources: [{ queue: 'pgqb-startup-log' }],
        http: { enabled: false },
      });
      try {
        const starting = await bridge.waitForLog((r) => r.msg === 'starting');
        assert.equal(starting.fn, fn);
        assert.equal(starting.mode, mode);
      } finally {
        await bridge.stop('SIGKILL');
      }
    });
  }
});
