import type { SourceConfig } from '../config/config.ts';

/**
 * A delivery as the pipeline sees it: what arrived, whether the broker still lets us settle it,
 * and the two ways to settle it. `amqp/` implements it; nothing under `pipeline/` knows amqplib.
 */

/** The AMQP basic properties the bridge reads or carries into a dead letter. */
export interface MessageAttributes {
  readonly contentType?: string | undefined;
  readonly contentEncoding?: string | undefined;
  readonly headers?: Readonly<Record<string, unknown>> | undefined;
  readonly deliveryMode?: number | undefined;
  readonly priority?: number | undefined;
  readonly correlationId?: string | undefined;
  readonly replyTo?: string | undefined;
  readonly expiration?: string | undefined;
  readonly messageId?: string | undefined;
  readonly timestamp?: number | undefined;
  readonly type?: string | undefined;
  readonly userId?: string | undefined;
  readonly appId?: string | undefined;
}

/** Where the message came from, for the dead letter and the logs. */
export interface Origin {
  readonly exchange: string;
  readonly routingKey: string;
  readonly redelivered: boolean;
  /** Times the broker delivered it before (quorum queues count; otherwise the bridge does). */
  readonly priorDeliveries: number;
  /** The broker's delivery tag: unique on its channel only. */
  readonly tag: number;
}

export interface Delivery {
  readonly source: SourceConfig;
  readonly body: Buffer;
  readonly attributes: MessageAttributes;
  readonly origin: Origin;
  readonly receivedAt: number;
  /** False once settled or once its channel is gone (then the broker owns it again). */
  readonly live: boolean;
  /** Aborts when the channel that delivered it is gone. */
  readonly lost: AbortSignal;
  /** Both return false when the delivery was no longer live; each settles at most once. */
  ack(): boolean;
  requeue(): boolean;
}

/** Why a message goes to its dead-letter queue (the kind is machine-readable). */
export type DeadLetterKind = 'invalid_message' | 'rejected_by_rpc' | 'repeated_failure';

export interface DeadLetterReason {
  readonly kind: DeadLetterKind;
  /** Machine-readable: an InvalidReason, a PostgREST/SQLSTATE code, or `repeated_failure`. */
  readonly reason: string;
  readonly message: string;
  readonly httpStatus?: number | undefined;
  readonly postgrestCode?: string | null | undefined;
  readonly details?: string | null | undefined;
  readonly hint?: string | null | undefined;
}

/** Why a publish did not end routed and confirmed. */
export type PublishFailureKind =
  | 'unavailable'
  | 'blocked'
  | 'returned'
  | 'nacked'
  | 'timeout'
  | 'too_large'
  | 'error';

export type PublishResult =
  | { readonly ok: true }
  | { readonly ok: false; readonly kind: PublishFailureKind; readonly message: string };

export interface ReplyBody {
  readonly status: 'enqueued' | 'duplicate' | 'dead_lettered';
  readonly [key: string]: unknown;
}

/**
 * Publishing on behalf of a delivery. Resolves (never rejects) once the broker routed the
 * message to a queue and confirmed it, or with why not.
 */
export interface SettlePort {
  deadLetter(delivery: Delivery, reason: DeadLetterReason): Promise<PublishResult>;
  reply(delivery: Delivery, body: ReplyBody, jobId?: string): Promise<PublishResult>;
}

/** The fields every log line about a delivery carries. */
export function deliveryFields(delivery: Delivery): Record<string, unknown> {
  return {
    queue: delivery.source.queue,
    deliveryTag: delivery.origin.tag,
    messageId: delivery.attributes.messageId,
    redelivered: delivery.origin.redelivered,
    priorDeliveries: delivery.origin.priorDeliveries,
  };
}

/** Where the publisher asked for the outcome to go, if anywhere. */
export function replyTo(delivery: Delivery): string | undefined {
  const to = delivery.attributes.replyTo;
  return typeof to === 'string' && to !== '' ? to : undefined;
}
