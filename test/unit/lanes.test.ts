import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { SourceConfig } from '../../src/config/config.ts';
import { Metrics } from '../../src/metrics.ts';
import type { Delivery } from '../../src/pipeline/delivery.ts';
import { Lanes } from '../../src/pipeline/lanes.ts';

const source = { queue: 'q' } as SourceConfig;
const delivery = (bytes: number): Delivery => ({ source, body: Buffer.alloc(bytes) }) as Delivery;

describe('Lanes: the bytes deliveries hold', () => {
  it('counts bodies on arrival, what is charged for their calls, and gives both back when done', () => {
    const started: Delivery[] = [];
    const lanes = new Lanes(
      () => 1,
      new Metrics({ processMetrics: false }),
      async (d) => {
        started.push(d);
      },
    );
    const [a, b] = [delivery(100), delivery(1000)];
    lanes.add(a);
    lanes.add(b);
    assert.equal(lanes.bytes, 1100, 'the waiting delivery holds its body too');
    lanes.charge(300);
    assert.equal(lanes.bytes, 1400);
    lanes.done(a, 300);
    assert.equal(lanes.bytes, 1000, 'the first is given back whole; the second starts');
    assert.deepEqual(started, [a, b]);
    lanes.charge(50);
    lanes.done(b, 50);
    assert.equal(lanes.bytes, 0);
    assert.equal(lanes.active, 0);
  });
});
