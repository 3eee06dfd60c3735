import type { EnqueueArgs } from '../message/args.ts';

/** The request body's fields besides the payload and the strings counted below: names, quotes, commas. */
const FIELD_BYTES = 128;

/**
 * Bytes a delivery holds for its call beyond its message body: the decoded payload (unless it is
 * the body itself, as in raw mode) and the request body, which carries the payload as hex, two
 * bytes per byte. The byte budget counts these too, so a budget of large messages bounds what
 * the process really holds, not a third of it. Strings are counted by length: an estimate that
 * is exact for ASCII, which is all the hex is.
 */
export function callBytes(body: Buffer, args: EnqueueArgs): number {
  const payload = args.payload?.length ?? 0;
  const decoded = args.payload === undefined || args.payload === body ? 0 : payload;
  const fields =
    args.entrypoint.length +
    (args.headersJson?.length ?? 0) +
    (args.dedupeKey?.length ?? 0) +
    (args.executeAfter?.length ?? 0) +
    (args.messageId?.length ?? 0);
  return decoded + 2 * payload + fields + FIELD_BYTES;
}
