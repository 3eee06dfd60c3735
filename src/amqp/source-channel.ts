import type { Channel, ChannelModel } from 'amqplib';
import type { Logger } from 'pino';
import type { SourceConfig } from '../config/config.ts';
import { toError } from '../errors.ts';
import type { AckHold } from './acks.ts';
import { endLease, type Lease, openLease } from './delivery.ts';
import { type BrokerFault, declareFault } from './faults.ts';

/**
 * Opening a source (the OPENING state of consumer.ts): its own channel, prefetch set before
 * consume, the source queue declared (or checked) and its dead-letter queue declared. A failure
 * is mapped to the broker fault it means, naming the config key to fix where there is one.
 */

export interface SourceState {
  readonly config: SourceConfig;
  /** Its position in `sources`, for the config keys in fault messages. */
  readonly index: number;
  fault: BrokerFault | undefined;
  lease: Lease | undefined;
  channel: Channel | undefined;
  consumerTag: string | undefined;
  reopenAttempt: number;
  /** The intake change in progress; the next one starts after it. */
  changing: Promise<void>;
}

export function sourceState(config: SourceConfig, index: number): SourceState {
  return {
    config,
    index,
    fault: undefined,
    lease: undefined,
    channel: undefined,
    consumerTag: undefined,
    reopenAttempt: 0,
    changing: Promise.resolve(),
  };
}

/** Closes the channel after sending the acks it still owes. */
export async function closeLease(lease: Lease, channel: Channel): Promise<void> {
  lease.acks.flush();
  endLease(lease);
  await channel.close().catch(() => undefined);
}

/** A declare that failed, with what it means for the operator. */
class DeclareError extends Error {
  readonly fault: BrokerFault;

  constructor(fault: BrokerFault, cause: unknown) {
    super(fault.message, { cause });
    this.fault = fault;
  }
}

/** What a failed open means: a refused declare names its key; anything else is unavailability. */
export function openFault(error: unknown): BrokerFault {
  return error instanceof DeclareError
    ? error.fault
    : {
        kind: 'unavailable' as const,
        config: false,
        key: undefined,
        message: `cannot open the source: ${toError(error).message}`,
      };
}

/**
 * Creates the source's channel and lease (set on `source` at once, so a close during the
 * declares is seen), sets its prefetch and declares its queues. Throws on any failure.
 */
export async function openSourceChannel(
  connection: ChannelModel,
  source: SourceState,
  ackHold: AckHold | undefined,
  logger: Logger,
  onClose: (lease: Lease) => void,
): Promise<void> {
  const { config, index } = source;
  const channel = await connection.createChannel();
  const lease = openLease(channel, ackHold);
  // A channel error (precondition failed, queue deleted, consumer timeout) must not crash the
  // process; what it means is reported where the failed operation is awaited.
  channel.on('error', (error: Error) =>
    logger.debug({ err: error, queue: config.queue }, 'channel closed by the broker'),
  );
  channel.on('close', () => onClose(lease));
  source.lease = lease;
  source.channel = channel;
  await channel.prefetch(config.prefetch, false);
  const keys = (argumentsKey: string, queueKey: string) => ({
    arguments: `sources.${index}.${argumentsKey}`,
    queue: `sources.${index}.${queueKey}`,
  });
  await declaring(config.queue, keys('queueArguments', 'queue'), () =>
    config.declare
      ? channel.assertQueue(config.queue, { durable: true, arguments: config.queueArguments })
      : channel.checkQueue(config.queue),
  );
  await declaring(config.deadLetterQueue, keys('deadLetterQueueArguments', 'deadLetterQueue'), () =>
    channel.assertQueue(config.deadLetterQueue, {
      durable: true,
      arguments: config.deadLetterQueueArguments,
    }),
  );
}

async function declaring(
  queue: string,
  keys: { readonly arguments: string; readonly queue: string },
  declare: () => Promise<unknown>,
): Promise<void> {
  try {
    await declare();
  } catch (error) {
    throw new DeclareError(declareFault(error, queue, keys), error);
  }
}
