// Injected faults: answers a real PostgREST (or a proxy in front of it) gives when something
// is wrong, served on demand so clients can be tested against each of them.

import type { IncomingHttpHeaders } from 'node:http';
import {
  ApiError,
  type DbTarget,
  errors,
  type Flavor,
  libpqConnectFailure,
  pgErrorStatus,
  SERVER_CLOSED_CONNECTION,
} from './errors.ts';

export type FaultKind =
  /** 503, a new database connection could not be opened. */
  | 'PGRST000'
  /** 503, a pooled connection broke. */
  | 'PGRST001'
  /** 503, no schema cache. */
  | 'PGRST002'
  /** 504, no pooled connection free in time. */
  | 'PGRST003'
  /** Errors raised by PostgreSQL during the call (status as the flavour maps them). */
  | '57P01'
  | '57014'
  | '40001'
  | '53300'
  /** A reverse proxy's HTML page: 502 or 504. */
  | 'bad-gateway'
  | 'gateway-timeout'
  /** The TCP connection is destroyed without an answer. */
  | 'reset'
  /** No answer at all until the client gives up or the server stops. */
  | 'hang';

export interface FaultRequest {
  readonly method: string;
  readonly path: string;
  readonly headers: IncomingHttpHeaders;
}

export interface Fault {
  readonly kind: FaultKind;
  /** How many matching requests get the fault; default: all until cleared. */
  readonly times?: number;
  /**
   * 'before-call' (default): the request never reaches the database. 'after-commit': the call
   * runs and commits, then its answer is replaced, so the job exists although the client saw
   * a failure (only applied to calls that succeeded).
   */
  readonly when?: 'before-call' | 'after-commit';
  /** Which requests are affected; default all. */
  readonly match?: (request: FaultRequest) => boolean;
}

/** An answer that is not a PostgREST error body. */
export interface RawAnswer {
  readonly status: number;
  readonly contentType: string;
  readonly body: string;
}

export type FaultAnswer = ApiError | RawAnswer | 'reset' | 'hang';

interface ActiveFault {
  readonly fault: Fault;
  remaining: number;
}

export class FaultRegistry {
  #active: ActiveFault[] = [];

  /** Adds a fault; the returned function removes it. */
  add(fault: Fault): () => void {
    const entry: ActiveFault = { fault, remaining: fault.times ?? Number.POSITIVE_INFINITY };
    this.#active.push(entry);
    return () => {
      this.#active = this.#active.filter((active) => active !== entry);
    };
  }

  clear(): void {
    this.#active = [];
  }

  /** The first fault that applies to this request at this point, counting it as used. */
  take(request: FaultRequest, when: 'before-call' | 'after-commit'): FaultKind | undefined {
    if (this.#active.length === 0) return undefined;
    const entry = this.#active.find(
      ({ fault, remaining }) =>
        remaining > 0 && (fault.when ?? 'before-call') === when && (fault.match?.(request) ?? true),
    );
    if (entry === undefined) return undefined;
    entry.remaining--;
    if (entry.remaining <= 0) this.#active = this.#active.filter((active) => active !== entry);
    return entry.fault.kind;
  }
}

const DATABASE_MESSAGES = {
  '57P01': 'terminating connection due to administrator command',
  '57014': 'canceling statement due to statement timeout',
  '40001': 'could not serialize access due to concurrent update',
  '53300': 'sorry, too many clients already',
} as const;

function proxyPage(status: number, title: string): RawAnswer {
  const heading = `${status} ${title}`;
  return {
    status,
    contentType: 'text/html',
    body: `<html>\r\n<head><title>${heading}</title></head>\r\n<body>\r\n<center><h1>${heading}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n`,
  };
}

export function faultAnswer(kind: FaultKind, flavor: Flavor, target: DbTarget): FaultAnswer {
  switch (kind) {
    case 'PGRST000':
      return errors.connection(
        flavor,
        libpqConnectFailure(Object.assign(new Error(), { code: 'ECONNREFUSED' }), target),
      );
    case 'PGRST001':
      return errors.client(SERVER_CLOSED_CONNECTION);
    case 'PGRST002':
      return errors.noSchemaCache();
    case 'PGRST003':
      return errors.poolTimeout();
    case 'bad-gateway':
      return proxyPage(502, 'Bad Gateway');
    case 'gateway-timeout':
      return proxyPage(504, 'Gateway Time-out');
    case 'reset':
    case 'hang':
      return kind;
    default: {
      const message = DATABASE_MESSAGES[kind];
      return new ApiError({ status: pgErrorStatus(kind, message, true, flavor), code: kind, message });
    }
  }
}
