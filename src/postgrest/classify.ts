import type { RpcResult } from './client.ts';

/**
 * What an RPC answer means for the delivery. Pure: decided from the HTTP status, PostgREST's
 * `code` (a SQLSTATE or PGRSTnnn) and the network errno, never from message text.
 *
 * | outcome          | bridge action                                                   |
 * |------------------|-----------------------------------------------------------------|
 * | enqueued         | ack                                                             |
 * | replayed         | ack, counted (the ledger knew the message: its first job's id)  |
 * | duplicate        | ack, counted (the dedupe key is already queued or picked)       |
 * | rejected_by_rpc  | dead-letter with the reason, then ack                           |
 * | transient        | hold unacked, back off, retry                                   |
 * | endpoint_fault   | hold unacked, pause intake, probe with backoff (never DLQ)      |
 * | unknown          | hold and retry; dead-letter only if it keeps failing for this   |
 * |                  | message while other messages succeed                            |
 */
export type Outcome =
  | { readonly kind: 'enqueued'; readonly jobId: string }
  | { readonly kind: 'replayed'; readonly jobId: string }
  | { readonly kind: 'duplicate' }
  | { readonly kind: 'rejected_by_rpc' }
  | { readonly kind: 'transient'; readonly retryAfterMs: number; readonly ambiguous: boolean }
  | { readonly kind: 'endpoint_fault' }
  | { readonly kind: 'unknown' };

export type OutcomeKind = Outcome['kind'];

export interface ClassifyContext {
  /** A 23505 only means "already queued" when the call carried a dedupe key... */
  readonly hasDedupeKey: boolean;
  /** ...and the conflict is on PGQueuer's dedupe index (the bulk function never reports one). */
  readonly dedupeConstraint: string | undefined;
}

const TRANSIENT: Outcome = { kind: 'transient', retryAfterMs: 0, ambiguous: false };
const REJECTED: Outcome = { kind: 'rejected_by_rpc' };
const ENDPOINT_FAULT: Outcome = { kind: 'endpoint_fault' };
const UNKNOWN: Outcome = { kind: 'unknown' };

/** Statuses that mean "try again later" whatever the body says. */
const TRANSIENT_STATUSES = new Set([408, 429, 502, 503, 504]);

/** PostgREST's own codes, by meaning. */
const PGRST_CODES: Readonly<Record<string, Outcome>> = {
  PGRST000: TRANSIENT, // cannot open a database connection
  PGRST001: TRANSIENT, // a pooled connection broke
  PGRST002: TRANSIENT, // schema cache not loaded (database unreachable)
  PGRST003: TRANSIENT, // pool acquisition timeout (504)
  PGRST102: REJECTED, // the request body was refused
  PGRST300: ENDPOINT_FAULT, // token sent but PostgREST has no JWT secret
};

/** SQLSTATE classes (first two characters) and single codes. Exact codes win over classes. */
const SQLSTATE_CODES: Readonly<Record<string, Outcome>> = {
  // Role switching: "role does not exist" (400 in PostgREST 10-13, 401 from 13.0.1). The bridge
  // hex-encodes bytes and validates text itself, so its arguments cannot produce a 22023.
  '22023': ENDPOINT_FAULT,
  '25006': ENDPOINT_FAULT, // read-only transaction: a replica or a GET
  '40001': TRANSIENT, // serialization failure (500 on PostgREST 16)
  '40P01': TRANSIENT, // deadlock detected
  '55P03': TRANSIENT, // lock not available
  '57014': TRANSIENT, // statement timeout / query cancelled
  P0001: REJECTED, // RAISE EXCEPTION in the function: it refused these arguments
};

const SQLSTATE_CLASSES: Readonly<Record<string, Outcome>> = {
  '08': TRANSIENT, // connection exception
  '53': TRANSIENT, // insufficient resources
  '57': TRANSIENT, // operator intervention (admin shutdown, crash recovery)
  '22': REJECTED, // data exception: a value could not be converted or is out of range
  '23': REJECTED, // integrity constraint: NOT NULL, CHECK, foreign key
  '54': REJECTED, // program limit exceeded: the value is too large
  '0A': ENDPOINT_FAULT, // feature not supported
  '0L': ENDPOINT_FAULT, // invalid grantor
  '0P': ENDPOINT_FAULT, // invalid role specification
  '28': ENDPOINT_FAULT, // invalid authorization
  '3D': ENDPOINT_FAULT, // database does not exist
  '3F': ENDPOINT_FAULT, // schema does not exist
  '42': ENDPOINT_FAULT, // privileges, undefined function/table/column: the deployment is wrong
};

/** Statuses without a recognised code. */
function byStatus(status: number): Outcome {
  if (TRANSIENT_STATUSES.has(status)) return TRANSIENT;
  // PostgREST never redirects an RPC: a 3xx is a proxy or a wrong URL, the same for every message.
  if (status >= 300 && status < 400) return ENDPOINT_FAULT;
  if (status === 413) return REJECTED; // a proxy refused the size of this message's body
  if (status >= 400 && status < 500) return ENDPOINT_FAULT;
  return UNKNOWN;
}

function byCustomCode(status: number): Outcome {
  // RAISE SQLSTATE 'PTnnn' sets the status itself: a 4xx is the function refusing the message.
  if (TRANSIENT_STATUSES.has(status)) return TRANSIENT;
  if (status === 401 || status === 403 || status === 404) return ENDPOINT_FAULT;
  if (status >= 400 && status < 500) return REJECTED;
  return UNKNOWN;
}

/**
 * PostgreSQL names the violated constraint in the message (`duplicate key value violates unique
 * constraint "name"`), always; the `Key (...)=(...)` details only when the role may read the
 * columns. Any other unique violation (the primary key when the id sequence is behind after a
 * restore, an index a user added) wrote no job, so it is a failure of the call.
 */
function isDedupeConflict(message: string, context: ClassifyContext): boolean {
  return (
    context.hasDedupeKey &&
    context.dedupeConstraint !== undefined &&
    message.includes(`"${context.dedupeConstraint}"`)
  );
}

function byCode(code: string, status: number, message: string, context: ClassifyContext): Outcome {
  if (code === '23505') return isDedupeConflict(message, context) ? { kind: 'duplicate' } : UNKNOWN;
  if (code.startsWith('PGRST')) {
    const known = PGRST_CODES[code];
    if (known !== undefined) return known;
    // PGRST1xx request/schema/media problems, PGRST2xx function lookup, PGRST3xx JWT.
    return /^PGRST[123]\d\d$/.test(code) ? ENDPOINT_FAULT : UNKNOWN;
  }
  if (/^PT\d\d\d$/.test(code)) return byCustomCode(status);
  return SQLSTATE_CODES[code] ?? SQLSTATE_CLASSES[code.slice(0, 2)] ?? byStatus(status);
}

/** OpenSSL's certificate verification codes and Node's TLS errors, as errno strings. */
function isTlsFailure(errno: string): boolean {
  return (
    /^(CERT_|UNABLE_TO_|ERR_TLS_|ERR_SSL_)/.test(errno) ||
    ['DEPTH_ZERO_SELF_SIGNED_CERT', 'SELF_SIGNED_CERT_IN_CHAIN', 'HOSTNAME_MISMATCH', 'INVALID_CA'].includes(
      errno,
    )
  );
}

/** A proxy's own 502/504 (no PostgREST code) may come after it forwarded the call. */
const PROXY_AMBIGUOUS_STATUSES = new Set([502, 504]);

export function classify(result: RpcResult, context: ClassifyContext): Outcome {
  switch (result.kind) {
    case 'enqueued':
      return result.replayed === true
        ? { kind: 'replayed', jobId: result.jobId }
        : { kind: 'enqueued', jobId: result.jobId };
    case 'duplicate':
      return { kind: 'duplicate' };
    case 'bad_response':
      return ENDPOINT_FAULT;
    case 'body_too_large':
      return REJECTED;
    case 'network_error':
      // A certificate the bridge will never trust is configuration, not weather.
      if (isTlsFailure(result.errno)) return ENDPOINT_FAULT;
      return { kind: 'transient', retryAfterMs: 0, ambiguous: result.requestSent };
    case 'http_error': {
      const outcome =
        TRANSIENT_STATUSES.has(result.status) || result.code === null
          ? byStatus(result.status)
          : byCode(result.code, result.status, result.message, context);
      if (outcome.kind !== 'transient') return outcome;
      const ambiguous = result.code === null && PROXY_AMBIGUOUS_STATUSES.has(result.status);
      if (result.retryAfterMs === 0 && !ambiguous) return outcome;
      return { kind: 'transient', retryAfterMs: result.retryAfterMs, ambiguous };
    }
  }
}
