import { uniqueName } from '../test/support/rabbit.ts';
import type { Cleanup } from './cleanup.ts';
import type { EpochClock } from './measure.ts';
import { CONTENT_TYPE, envelope } from './messages.ts';
import type { QueueType } from './options.ts';
import type { Rig } from './rig.ts';

const BATCH = 5000;
const BATCH_BYTES = 32 * 1024 * 1024;

/**
 * A new durable queue (declared as the bridge declares its sources, so the bridge's own
 * declaration matches), removed with its dead-letter queue at the end of the run.
 */
export async function freshQueue(
  rig: Rig,
  cleanup: Cleanup,
  scenario: string,
  queueType: QueueType = 'classic',
): Promise<string> {
  const queue = uniqueName(`pgqb-bench-${scenario}`);
  cleanup.add(`delete queue ${queue}`, () => rig.broker.deleteQueues(queue, `${queue}.dead`));
  const channel = await rig.broker.channel();
  await channel.assertQueue(queue, { durable: true, arguments: queueArguments(queueType) });
  return queue;
}

/** As the bridge's `queueArguments` must repeat them, or its declaration is refused. */
export function queueArguments(queueType: QueueType): Record<string, string> {
  return { 'x-queue-type': queueType };
}

/** Deletes a scenario's queues as soon as it is done, so leftovers do not weigh on the broker later. */
export async function removeQueue(rig: Rig, queue: string): Promise<void> {
  // A failure here must not hide the scenario's own error; the run's cleanup tries again.
  await rig.broker.deleteQueues(queue, `${queue}.dead`).catch(() => undefined);
}

/** Publishes `count` envelopes with confirms, then checks that all of them are ready in the queue. */
export async function preload(
  rig: Rig,
  queue: string,
  count: number,
  persistent: boolean,
  clock: EpochClock,
  payloadBytes?: number,
): Promise<void> {
  await publishEnvelopes(rig, queue, { first: 0, count, persistent, payloadBytes }, clock);
  const ready = await readyCount(rig, queue);
  if (ready !== count) throw new Error(`queue ${queue} holds ${ready} ready messages after loading ${count}`);
}

export interface EnvelopeRange {
  /** Sequence number (`mid`) of the first envelope; the rest follow one by one. */
  readonly first: number;
  readonly count: number;
  readonly persistent: boolean;
  /** Payload bytes per message; undefined: the small JSON payload of every other scenario. */
  readonly payloadBytes?: number | undefined;
}

/**
 * Publishes envelopes with confirms, BATCH at a time (or, for large payloads, about BATCH_BYTES
 * at a time), so that neither this process nor the client library ever holds more than one batch
 * of bodies.
 */
export async function publishEnvelopes(
  rig: Rig,
  queue: string,
  { first, count, persistent, payloadBytes }: EnvelopeRange,
  clock: EpochClock,
): Promise<void> {
  const perBatch = payloadBytes === undefined ? BATCH : Math.max(1, Math.floor(BATCH_BYTES / payloadBytes));
  for (let offset = 0; offset < count; offset += perBatch) {
    const size = Math.min(perBatch, count - offset);
    const batch = Array.from({ length: size }, (_, i) => ({
      body: envelope(first + offset + i, clock.nowMs(), payloadBytes),
      options: {
        persistent,
        contentType: CONTENT_TYPE,
        ...(rig.ledger ? { messageId: String(first + offset + i) } : {}),
      },
    }));
    await rig.broker.publish(queue, batch);
  }
}

/** Messages ready in the queue (not counting those delivered and unacked). */
export async function readyCount(rig: Rig, queue: string): Promise<number> {
  const channel = await rig.broker.channel();
  return (await channel.checkQueue(queue)).messageCount;
}
