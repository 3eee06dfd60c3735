import type { IdempotencyConfig } from '../config/idempotency.ts';
import type { IncomingMessage } from './args.ts';
import type { DecodeResult } from './decode.ts';
import { checkText, MAX_DEDUPE_KEY_BYTES } from './fields.ts';
import { InvalidMessageError, invalid } from './invalid.ts';

/**
 * The message's identity for the idempotency ledger, added to what decoding made of it. Where
 * it is read is the source's `idempotency.messageId`; a message without one is enqueued at least
 * once (no `messageId`) or, when the source demands one, refused as `missing_message_id`.
 */

/** A ledger key is a btree entry, as a dedupe key is. */
const MAX_MESSAGE_ID_BYTES = MAX_DEDUPE_KEY_BYTES;
const utf8 = new TextDecoder('utf-8', { fatal: true });

export function identify(
  decoded: DecodeResult,
  message: IncomingMessage,
  config: IdempotencyConfig | undefined,
): DecodeResult {
  if (!decoded.ok || config === undefined) return decoded;
  try {
    const messageId = readIdentity(message, config);
    return messageId === undefined ? decoded : { ok: true, args: { ...decoded.args, messageId } };
  } catch (error) {
    if (error instanceof InvalidMessageError) return { ok: false, error };
    throw error;
  }
}

function readIdentity(message: IncomingMessage, config: IdempotencyConfig): string | undefined {
  const source = config.messageId;
  const [what, value] =
    source.from === 'message-id'
      ? ['the AMQP message-id', message.properties.messageId]
      : source.from === 'header'
        ? [`header ${source.name}`, message.properties.headers?.[source.name]]
        : [`body field ${source.name}`, bodyField(message.body, source.name)];
  if (value === undefined || value === null || value === '') {
    if (config.whenMissing === 'dead_letter') {
      invalid('missing_message_id', `${what} is missing, and this source enqueues a message only with one`);
    }
    return undefined;
  }
  const text = Buffer.isBuffer(value) ? decodeUtf8(value, what) : value;
  if (typeof text !== 'string') {
    invalid(
      'invalid_message_id',
      `${what} must be a string, got ${Array.isArray(text) ? 'an array' : typeof text}`,
    );
  }
  checkText('invalid_message_id', what, text, MAX_MESSAGE_ID_BYTES);
  return text;
}

/** A top-level field of a JSON object body; undefined for any other body. */
function bodyField(body: Buffer, name: string): unknown {
  try {
    const parsed: unknown = JSON.parse(body.toString('utf8'));
    return typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed)
      ? (parsed as Record<string, unknown>)[name]
      : undefined;
  } catch {
    return undefined;
  }
}

function decodeUtf8(value: Buffer, what: string): string {
  try {
    return utf8.decode(value);
  } catch {
    return invalid('invalid_message_id', `${what} is not valid UTF-8`);
  }
}
