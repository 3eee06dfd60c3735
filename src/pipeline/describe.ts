import type { Logger } from 'pino';
import type { EnqueueArgs } from '../message/args.ts';
import type { RpcResult } from '../postgrest/client.ts';
import type { Attempt } from '../postgrest/enqueuer.ts';
import { type DeadLetterKind, type DeadLetterReason, type Delivery, deliveryFields } from './delivery.ts';

/** Log fields and dead-letter reasons from what the endpoint answered. */

export function resultFields(result: RpcResult): Record<string, unknown> {
  switch (result.kind) {
    case 'http_error':
      return { httpStatus: result.status, code: result.code, error: result.message };
    case 'network_error':
      return { errno: result.errno, error: result.message, requestSent: result.requestSent };
    case 'bad_response':
      return { httpStatus: result.status, error: result.message };
    case 'body_too_large':
      return { error: result.message };
    case 'enqueued':
    case 'duplicate':
      return {};
  }
}

export function describe(result: RpcResult): string {
  switch (result.kind) {
    case 'http_error':
      return `HTTP ${result.status}${result.code === null ? '' : ` ${result.code}`}: ${result.message}`;
    case 'network_error':
      return `${result.errno}: ${result.message}`;
    case 'bad_response':
      return `HTTP ${result.status}: ${result.message}`;
    case 'body_too_large':
      return `request body too large: ${result.message}`;
    case 'enqueued':
    case 'duplicate':
      return result.kind;
  }
}

export function rpcReason(result: RpcResult, kind: DeadLetterKind): DeadLetterReason {
  if (result.kind === 'http_error') {
    return {
      kind,
      reason: result.code ?? `http_${result.status}`,
      message: result.message,
      httpStatus: result.status,
      postgrestCode: result.code,
      details: result.details,
      hint: result.hint,
    };
  }
  return { kind, reason: result.kind, message: describe(result) };
}

export function repeatedFailure(result: RpcResult, failures: number, deliveries: number): DeadLetterReason {
  return {
    ...rpcReason(result, 'repeated_failure'),
    reason: 'repeated_failure',
    message: `failed ${failures} times in delivery ${deliveries} while other messages succeeded; last error: ${describe(result)}`,
  };
}

/**
 * The first failure of a delivery is worth a warning; the rest of a long outage is noise (the
 * circuit logs the outage itself).
 */
export function logFailure(
  logger: Logger,
  delivery: Delivery,
  args: EnqueueArgs,
  attempt: Attempt,
  failures: number,
): void {
  const level = failures === 1 ? 'warn' : 'debug';
  if (!logger.isLevelEnabled(level)) return;
  logger[level](
    {
      ...deliveryFields(delivery),
      entrypoint: args.entrypoint,
      outcome: attempt.outcome.kind,
      failures,
      ...resultFields(attempt.result),
    },
    `enqueue failed (${attempt.outcome.kind}); holding and retrying`,
  );
}
