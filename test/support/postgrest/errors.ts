// PostgREST's error answers: the body `{"code","details","hint","message"}` (keys in that
// order, as 10.1.2 serialises them), the SQLSTATE → HTTP status table, and the headers that
// go with some statuses. Texts and statuses follow PostgREST 10.1.2 unless the flavour is
// 'v14', which applies the differences listed in postgrest-recorded-cases.md.

import pg from 'pg';

export type Flavor = '10.1.2' | 'v14';

export interface ErrorInit {
  readonly status: number;
  readonly code: string;
  readonly message: string;
  readonly details?: string | null;
  readonly hint?: string | null;
  readonly headers?: Readonly<Record<string, string>>;
  /** Reason phrase, for `PTnnn` errors whose phrase is the error message. */
  readonly statusText?: string;
  /** A fixed body instead of the error object (10.1.2 answers unknown paths with `{}`). */
  readonly rawBody?: string;
}

/** A PostgREST error answer. Thrown inside the request pipeline and rendered at its top. */
export class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  readonly details: string | null;
  readonly hint: string | null;
  readonly headers: Readonly<Record<string, string>>;
  readonly statusText: string | undefined;
  readonly rawBody: string | undefined;

  constructor(init: ErrorInit) {
    super(init.message);
    this.name = 'ApiError';
    this.status = init.status;
    this.code = init.code;
    this.details = init.details ?? null;
    this.hint = init.hint ?? null;
    this.headers = init.headers ?? {};
    this.statusText = init.statusText;
    this.rawBody = init.rawBody;
  }

  body(): string {
    return (
      this.rawBody ??
      JSON.stringify({ code: this.code, details: this.details, hint: this.hint, message: this.message })
    );
  }
}

const BEARER = { 'WWW-Authenticate': 'Bearer' } as const;

/** Haskell's `show` for a string: PostgREST 10.1.2 quotes the JWT error this way in WWW-Authenticate. */
export function haskellShow(text: string): string {
  let out = '"';
  for (const char of text) {
    const point = char.codePointAt(0) ?? 0;
    if (char === '"') out += '\\"';
    else if (char === '\\') out += '\\\\';
    else if (char === '\n') out += '\\n';
    else if (char === '\t') out += '\\t';
    else if (point < 0x20 || point > 0x7e) out += `\\${point}`;
    else out += char;
  }
  return `${out}"`;
}

export const errors = {
  connection: (flavor: Flavor, details: string): ApiError =>
    new ApiError({
      status: 503,
      code: 'PGRST000',
      message:
        flavor === 'v14'
          ? 'Database connection error.'
          : 'Database connection error. Retrying the connection.',
      details,
    }),
  client: (details: string): ApiError =>
    new ApiError({
      status: 503,
      code: 'PGRST001',
      message: 'Database client error. Retrying the connection.',
      details,
    }),
  noSchemaCache: (): ApiError =>
    new ApiError({
      status: 503,
      code: 'PGRST002',
      message: 'Could not query the database for the schema cache. Retrying.',
    }),
  poolTimeout: (): ApiError =>
    new ApiError({
      status: 504,
      code: 'PGRST003',
      message: 'Timed out acquiring connection from connection pool.',
    }),
  notFound: (flavor: Flavor): ApiError =>
    flavor === 'v14'
      ? new ApiError({ status: 404, code: 'PGRST125', message: 'Invalid path specified in request URL' })
      : new ApiError({ status: 404, code: '', message: '', rawBody: '{}' }),
  rpcMethod: (method: string): ApiError =>
    new ApiError({ status: 405, code: 'PGRST101', message: `Cannot use the ${method} method on RPC` }),
  unsupportedMethod: (method: string): ApiError =>
    new ApiError({ status: 405, code: 'PGRST117', message: `Unsupported HTTP method: ${method}` }),
  invalidBody: (message: string): ApiError => new ApiError({ status: 400, code: 'PGRST102', message }),
  invalidSchema: (flavor: Flavor, schema: string, exposed: readonly string[]): ApiError =>
    flavor === 'v14'
      ? new ApiError({
          status: 406,
          code: 'PGRST106',
          message: `Invalid schema: ${schema}`,
          hint: `Only the following schemas are exposed: ${exposed.join(', ')}`,
        })
      : new ApiError({
          status: 406,
          code: 'PGRST106',
          message: `The schema must be one of the following: ${exposed.join(', ')}`,
        }),
  notAcceptable: (flavor: Flavor, mediaTypes: readonly string[]): ApiError =>
    new ApiError({
      status: flavor === 'v14' ? 406 : 415,
      code: 'PGRST107',
      message: `None of these media types are available: ${mediaTypes.join(', ')}`,
    }),
  singularity: (rows: number): ApiError =>
    new ApiError({
      status: 406,
      code: 'PGRST116',
      message: 'JSON object requested, multiple (or no) rows returned',
      details: `Results contain ${rows} rows, application/vnd.pgrst.object+json requires 1 row`,
    }),
  anonymousDisabled: (): ApiError =>
    new ApiError({ status: 401, code: 'PGRST302', message: 'Anonymous access is disabled', headers: BEARER }),
  noJwtSecret: (): ApiError =>
    new ApiError({ status: 500, code: 'PGRST300', message: 'Server lacks JWT secret' }),
  /** PGRST301 (decoding, 10.1.2 also claims) or PGRST303 (claims, v14). */
  invalidToken: (code: 'PGRST301' | 'PGRST303', message: string, details: string | null = null): ApiError =>
    new ApiError({
      status: 401,
      code,
      message,
      details,
      headers: {
        'WWW-Authenticate': `Bearer error="invalid_token", error_description=${haskellShow(message)}`,
      },
    }),
  strictPreferences: (invalid: readonly string[]): ApiError =>
    new ApiError({
      status: 400,
      code: 'PGRST122',
      message: 'Invalid preferences given with handling=strict',
      details: `Invalid preferences: ${invalid.join(', ')}`,
    }),
  internal: (message: string): ApiError => new ApiError({ status: 500, code: 'PGRSTX00', message }),
};

// SQLSTATEs with a status of their own; everything not listed here or by class is a 400.
const STATUS_BY_CODE: Readonly<Record<string, number>> = {
  '23503': 409, // foreign_key_violation
  '23505': 409, // unique_violation
  '25006': 405, // read_only_sql_transaction
  '42883': 404, // undefined_function (e.g. a stale schema cache)
  '42P01': 404, // undefined_table
  P0001: 400, // plain RAISE EXCEPTION
};

const STATUS_BY_CLASS: Readonly<Record<string, number>> = {
  '08': 503, // connection exception
  '09': 500,
  '0L': 403,
  '0P': 403,
  '25': 500,
  '28': 403,
  '2D': 500,
  '38': 500,
  '39': 500,
  '3B': 500,
  '40': 500, // serialization failure, deadlock
  '53': 503, // insufficient resources
  '54': 413, // program limit exceeded (500 from v12.2 on)
  '55': 500,
  '57': 500, // operator intervention, including 57P01 in 10.1.2
  '58': 500,
  F0: 500,
  HV: 500,
  P0: 500,
  XX: 500,
};

/** HTTP status for a PostgreSQL error, first matching rule wins (PostgREST's pgErrorStatus). */
export function pgErrorStatus(code: string, message: string, authenticated: boolean, flavor: Flavor): number {
  if (code === '42501') return authenticated ? 403 : 401;
  if (flavor === 'v14') {
    if (code === '22023' && /^role ".*" does not exist$/.test(message)) return 401;
    if (code === '21000' && !message.endsWith('requires a WHERE clause')) return 500;
    if (code === '57P01') return 503;
    if (code === '53400' || code.startsWith('54')) return 500;
  }
  const known = STATUS_BY_CODE[code];
  if (known !== undefined) return known;
  if (code.startsWith('PT')) {
    const status = Number(code.slice(2));
    return Number.isInteger(status) && status >= 100 && status <= 599 ? status : 500;
  }
  return STATUS_BY_CLASS[code.slice(0, 2)] ?? 400;
}

/** Turns an error raised by PostgreSQL into PostgREST's answer. */
export function fromDatabaseError(error: pg.DatabaseError, authenticated: boolean, flavor: Flavor): ApiError {
  const code = error.code ?? 'XX000';
  const status = pgErrorStatus(code, error.message, authenticated, flavor);
  return new ApiError({
    status,
    code,
    message: error.message,
    details: error.detail ?? null,
    hint: error.hint ?? null,
    ...(status === 401 ? { headers: BEARER } : {}),
    ...(code.startsWith('PT') ? { statusText: error.message } : {}),
  });
}

export function isDatabaseError(error: unknown): error is pg.DatabaseError {
  return error instanceof pg.DatabaseError;
}

/** Where the server connects to, for libpq-style connection failure texts. */
export type DbTarget = { readonly socket: string } | { readonly host: string; readonly port: number };

/** libpq's wording for a connection that could not be opened (the `details` of PGRST000). */
export function libpqConnectFailure(error: unknown, target: DbTarget): string {
  const where =
    'socket' in target
      ? `connection to server on socket "${target.socket}" failed`
      : `connection to server at "${target.host}", port ${target.port} failed`;
  if (isDatabaseError(error)) return `${where}: FATAL:  ${error.message}\n`;
  const code = error instanceof Error && 'code' in error ? String(error.code) : '';
  const hint =
    'socket' in target
      ? '\n\tIs the server running locally and accepting connections on that socket?\n'
      : '\n\tIs the server running on that host and accepting TCP/IP connections?\n';
  switch (code) {
    case 'ECONNREFUSED':
      return `${where}: Connection refused${hint}`;
    case 'ENOENT':
      return `${where}: No such file or directory${hint}`;
    case 'ETIMEDOUT':
      return `${where}: Connection timed out${hint}`;
    case 'EHOSTUNREACH':
      return `${where}: No route to host${hint}`;
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return `could not translate host name "${'host' in target ? target.host : ''}" to address: Name or service not known\n`;
    default:
      return `${where}: ${error instanceof Error ? error.message : String(error)}\n`;
  }
}

/** libpq's text when a connection that looked alive turns out to be closed. */
export const SERVER_CLOSED_CONNECTION =
  'server closed the connection unexpectedly\n\tThis probably means the server terminated abnormally\n\tbefore or while processing the request.\n';
/** libpq's text for any use of a connection it already knows to be dead. */
export const NO_CONNECTION = 'no connection to the server\n';
