import type { Options } from 'amqplib';
import type { Logger } from 'pino';
import type { SourceConfig } from '../config/config.ts';
import type { Metrics } from '../metrics.ts';
import {
  type DeadLetterReason,
  type Delivery,
  deliveryFields,
  type PublishResult,
  type ReplyBody,
  replyTo,
  type SettlePort,
} from '../pipeline/delivery.ts';
import { buildDeadLetter } from './dead-letter.ts';
import { declareFault } from './faults.ts';
import type { ConfirmPublisher } from './publisher.ts';

/**
 * Dead letters and replies, published through the confirm publisher. A dead letter that comes
 * back unroutable means its queue is gone (deleted by an operator): the queue is declared again
 * so that the retry that follows can succeed.
 */
export class AmqpSettlePort implements SettlePort {
  readonly #publisher: ConfirmPublisher;
  readonly #metrics: Metrics;
  readonly #logger: Logger;

  constructor(publisher: ConfirmPublisher, metrics: Metrics, logger: Logger) {
    this.#publisher = publisher;
    this.#metrics = metrics;
    this.#logger = logger;
  }

  async deadLetter(delivery: Delivery, reason: DeadLetterReason): Promise<PublishResult> {
    const { source } = delivery;
    const original = { content: delivery.body, properties: delivery.attributes, fields: delivery.origin };
    const at = new Date();
    let letter = buildDeadLetter(original, source.queue, reason, at);
    let result = await this.#publisher.publish(source.deadLetterQueue, letter.content, letter.options);
    if (!result.ok && result.kind === 'too_large') {
      // The estimate let it through but amqplib did not: keep only the body and the reason.
      letter = buildDeadLetter(original, source.queue, reason, at, false);
      result = await this.#publisher.publish(source.deadLetterQueue, letter.content, letter.options);
    }
    if (letter.dropped.length > 0 && result.ok) {
      this.#metrics.droppedHeaders.inc({ queue: source.queue });
      this.#logger.warn(
        { ...deliveryFields(delivery), dropped: letter.dropped },
        'the original headers did not fit the dead letter; the largest were dropped',
      );
    }
    if (!result.ok) {
      this.#metrics.publishFailures.inc({ kind: result.kind });
      if (result.kind === 'returned') await this.#declareDeadLetterQueue(source);
    }
    return result;
  }

  async reply(delivery: Delivery, body: ReplyBody, jobId?: string): Promise<PublishResult> {
    const to = replyTo(delivery);
    if (to === undefined) return { ok: true };
    const { correlationId } = delivery.attributes;
    // The job id goes in as the digits PostgREST sent: ids are BIGINT.
    const json = JSON.stringify(body);
    const content = Buffer.from(jobId === undefined ? json : `${json.slice(0, -1)},"job_id":${jobId}}`);
    const options: Options.Publish = {
      contentType: 'application/json',
      headers: { 'x-pgq-bridge-outcome': body.status },
      ...(correlationId === undefined ? {} : { correlationId }),
    };
    const result = await this.#publisher.publish(to, content, options);
    if (!result.ok) this.#metrics.publishFailures.inc({ kind: result.kind });
    return result;
  }

  async #declareDeadLetterQueue(source: SourceConfig): Promise<void> {
    const connection = this.#publisher.connection;
    if (connection === undefined) return;
    try {
      // A channel of its own: a refused declare closes the channel it was made on.
      const channel = await connection.createChannel();
      channel.on('error', () => undefined);
      try {
        await channel.assertQueue(source.deadLetterQueue, {
          durable: true,
          arguments: source.deadLetterQueueArguments,
        });
        this.#logger.warn(
          { queue: source.queue, deadLetterQueue: source.deadLetterQueue },
          'the dead-letter queue was missing; declared it again',
        );
      } finally {
        await channel.close().catch(() => undefined);
      }
    } catch (error) {
      const fault = declareFault(error, source.deadLetterQueue, {
        arguments: 'sources[].deadLetterQueueArguments',
        queue: 'sources[].deadLetterQueue',
      });
      this.#logger.error(
        {
          queue: source.queue,
          deadLetterQueue: source.deadLetterQueue,
          key: fault.key,
          reason: fault.message,
        },
        'cannot declare the dead-letter queue again',
      );
    }
  }
}
