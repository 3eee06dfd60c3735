import { BridgeError } from '../errors.ts';

/**
 * Why a message cannot become a job: a machine-readable reason and a sentence naming the field.
 * Such a verdict is final for the message (the same bytes fail the same way on every
 * redelivery), so the pipeline dead-letters it at once.
 */

export type InvalidReason =
  | 'empty_body'
  | 'invalid_utf8'
  | 'invalid_json'
  | 'not_an_object'
  | 'unknown_field'
  | 'unsupported_content_type'
  | 'unsupported_content_encoding'
  | 'missing_entrypoint'
  | 'invalid_entrypoint'
  | 'invalid_payload'
  | 'invalid_priority'
  | 'invalid_execute_after'
  | 'invalid_dedupe_key'
  | 'invalid_headers'
  | 'entrypoint_not_allowed'
  | 'payload_too_large'
  | 'headers_too_large'
  | 'missing_message_id'
  | 'invalid_message_id';

export class InvalidMessageError extends BridgeError {
  readonly reason: InvalidReason;

  constructor(reason: InvalidReason, message: string) {
    super('invalid_message', message);
    this.reason = reason;
    this.name = 'InvalidMessageError';
  }
}

export function invalid(reason: InvalidReason, message: string): never {
  throw new InvalidMessageError(reason, message);
}

/** How a value is named in a refusal. */
export function jsonType(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (Buffer.isBuffer(value)) return 'bytes';
  return `a ${typeof value}`;
}

export function describeValue(value: unknown): string {
  return typeof value === 'number' ? String(value) : jsonType(value);
}
