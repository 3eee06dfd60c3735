import type { DecodeOptions, EnqueueArgs, IncomingMessage } from './args.ts';
import { decodeEnvelope } from './envelope.ts';
import { InvalidMessageError } from './invalid.ts';
import { decodeRaw } from './raw.ts';

/**
 * Turns a delivery into the arguments of fn_pgqueuer_enqueue, or says precisely why it cannot.
 * Pure: no I/O, no clock, so every rule is a unit test. The source's mode picks the reading
 * (envelope.ts, raw.ts); the per-argument rules are in fields.ts.
 *
 * Anything decided here is final for the message: a rejection is dead-lettered at once, because
 * the same bytes will fail the same way on every redelivery.
 */

export type DecodeResult =
  | { readonly ok: true; readonly args: EnqueueArgs }
  | { readonly ok: false; readonly error: InvalidMessageError };

export function decodeMessage(message: IncomingMessage, options: DecodeOptions): DecodeResult {
  try {
    const args = options.mode === 'raw' ? decodeRaw(message, options) : decodeEnvelope(message, options);
    return { ok: true, args };
  } catch (error) {
    if (error instanceof InvalidMessageError) return { ok: false, error };
    throw error;
  }
}
