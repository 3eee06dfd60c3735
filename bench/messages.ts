import { isDeepStrictEqual } from 'node:util';
import type { EnqueueArgs } from '../src/message/args.ts';
import { decodeMessage } from '../src/message/decode.ts';

/**
 * Every scenario enqueues the same job shape: a small JSON payload and headers carrying the
 * message's sequence number (to find missing or duplicate jobs) and its publish time (for
 * publish→row latency). The ceilings build the arguments directly; `checkEncoding` proves they
 * are exactly what the bridge decodes from the envelope, so all scenarios send the same bytes.
 */

export const ENTRYPOINT = 'bench.job';
export const CONTENT_TYPE = 'application/json';
const PAYLOAD = '{"order":123456,"sku":"SKU-0001","qty":2,"note":"benchmark job"}';

function headersJson(mid: number, publishedAtMs: number): string {
  return `{"mid":${mid},"t":${publishedAtMs.toFixed(3)}}`;
}

/**
 * With `payloadBytes`, the payload is that many bytes, base64 in the envelope (as the decoder
 * takes bytes); its text is built once per size, since the large runs publish thousands.
 */
export function envelope(mid: number, publishedAtMs: number, payloadBytes?: number): Buffer {
  const payload = payloadBytes === undefined ? PAYLOAD : largePayload(payloadBytes);
  return Buffer.from(
    `{"entrypoint":"${ENTRYPOINT}","payload":${payload},"headers":${headersJson(mid, publishedAtMs)}}`,
  );
}

const largePayloads = new Map<number, string>();

function largePayload(bytes: number): string {
  let text = largePayloads.get(bytes);
  if (text === undefined) {
    const data = Buffer.alloc(bytes);
    for (let i = 0; i < bytes; i++) data[i] = (i * 7919) & 0xff;
    text = JSON.stringify(data.toString('base64'));
    largePayloads.set(bytes, text);
  }
  return text;
}

export function jobArgs(mid: number, publishedAtMs: number): EnqueueArgs {
  return {
    entrypoint: ENTRYPOINT,
    payload: Buffer.from(PAYLOAD),
    headersJson: headersJson(mid, publishedAtMs),
  };
}

export function decodeEnvelope(body: Buffer): EnqueueArgs {
  const decoded = decodeMessage(
    { body, properties: {} },
    { mode: 'envelope', dedupeKeyFromMessageId: false },
  );
  if (!decoded.ok)
    throw new Error(`benchmark message rejected by the bridge's decoder: ${decoded.error.message}`);
  return decoded.args;
}

export function checkEncoding(): void {
  const at = Date.now() + 0.123;
  const decoded = decodeEnvelope(envelope(42, at));
  if (!isDeepStrictEqual({ ...decoded }, { ...jobArgs(42, at) })) {
    throw new Error(
      `the ceilings' arguments differ from what the bridge decodes: ${JSON.stringify(decoded)} vs ${JSON.stringify(jobArgs(42, at))}`,
    );
  }
}
