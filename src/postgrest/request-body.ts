import type { EnqueueArgs } from '../message/args.ts';

/**
 * Request bodies of the enqueue functions. Bytes go as bytea hex text (`\x…`): PostgREST hands a
 * JSON string to bytea's input function, which would store a base64 string as its ASCII
 * characters. Headers are the publisher's own JSON text, so large integers in them stay exact.
 *
 * A job's body is kept as the text around its payload and the payload's bytes: the bulk call's
 * body is written from those straight into one buffer, so a large payload never exists as a hex
 * string, a share of a joined string and the socket's copy of that string at once.
 */

/** One job's body: `head`, the payload as hex (if any), then `tail`. */
export interface JobBody {
  readonly head: string;
  readonly payload: Buffer | undefined;
  readonly tail: string;
  /** Its length in bytes. */
  readonly bytes: number;
}

export function jobBody(args: EnqueueArgs): JobBody {
  let head =
    args.messageId === undefined
      ? `{"entrypoint":${JSON.stringify(args.entrypoint)}`
      : `{"message_id":${JSON.stringify(args.messageId)},"entrypoint":${JSON.stringify(args.entrypoint)}`;
  let tail = '';
  if (args.payload !== undefined) {
    head += ',"payload":"\\\\x';
    tail = '"';
  }
  if (args.priority !== undefined) tail += `,"priority":${args.priority}`;
  if (args.executeAfter !== undefined) tail += `,"execute_after":${JSON.stringify(args.executeAfter)}`;
  if (args.dedupeKey !== undefined) tail += `,"dedupe_key":${JSON.stringify(args.dedupeKey)}`;
  if (args.headersJson !== undefined) tail += `,"headers":${args.headersJson}`;
  tail += '}';
  const hexBytes = args.payload === undefined ? 0 : 2 * args.payload.length;
  return {
    head,
    payload: args.payload,
    tail,
    bytes: Buffer.byteLength(head) + hexBytes + Buffer.byteLength(tail),
  };
}

/** The single call's body as text. */
export function encodeEnqueueBody(args: EnqueueArgs): string {
  const { head, payload, tail } = jobBody(args);
  return payload === undefined ? head + tail : head + payload.toString('hex') + tail;
}

const OPEN = Buffer.from('{"jobs":[');
const CLOSE = Buffer.from(']}');
/** `{"jobs":[` and `]}` around the jobs, and a comma between each two. */
export function bulkBodyBytes(jobBytes: number, jobs: number): number {
  return OPEN.length + CLOSE.length + jobBytes + Math.max(0, jobs - 1);
}

/** The bulk call's body, `{"jobs":[<job>,<job>,...]}`, written into one buffer. */
export function bulkBody(jobs: readonly JobBody[]): Buffer {
  let jobBytes = 0;
  for (const job of jobs) jobBytes += job.bytes;
  const out = Buffer.allocUnsafe(bulkBodyBytes(jobBytes, jobs.length));
  let at = OPEN.copy(out, 0);
  for (let i = 0; i < jobs.length; i++) {
    const job = jobs[i] as JobBody;
    if (i > 0) out[at++] = 0x2c;
    at += out.write(job.head, at, 'utf8');
    if (job.payload !== undefined) at = writeHex(job.payload, out, at);
    at += out.write(job.tail, at, 'utf8');
  }
  CLOSE.copy(out, at);
  return out;
}

/** Lower-case hex digits of every byte value, two bytes each. */
const HEX_PAIRS = (() => {
  const table = new Uint16Array(256);
  const digits = Buffer.from('0123456789abcdef');
  // Stored so that writing the 16-bit value little-endian puts the high digit first.
  for (let b = 0; b < 256; b++) table[b] = (digits[b >> 4] as number) | ((digits[b & 15] as number) << 8);
  return table;
})();

/**
 * Below this many bytes Node's native hex encoder and a short-lived string are cheaper than the
 * loop; above it the loop keeps a payload-sized string from existing at all (bench:micro).
 */
const NATIVE_HEX_MAX_BYTES = 16 * 1024;

/** Writes `bytes` as hex into `out` at `at`; returns the end. */
export function writeHex(bytes: Buffer, out: Buffer, at: number): number {
  if (bytes.length <= NATIVE_HEX_MAX_BYTES) return at + out.write(bytes.toString('hex'), at, 'latin1');
  let o = at;
  for (let i = 0; i < bytes.length; i++) {
    const pair = HEX_PAIRS[bytes[i] as number] as number;
    out[o] = pair & 0xff;
    out[o + 1] = pair >> 8;
    o += 2;
  }
  return o;
}
