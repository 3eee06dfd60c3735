import http from 'node:http';
import https from 'node:https';
import { urlToHttpOptions } from 'node:url';
import type { Config } from '../config/config.ts';
import { errorCode, toError } from '../errors.ts';
import type { EnqueueArgs } from '../message/args.ts';
import { encodeEnqueueBody } from './request-body.ts';

/**
 * PostgREST client for one function: POST {url}/rpc/{function} with the named arguments as a JSON
 * object. It never throws for a failed call; it describes what came back, and `classify.ts`
 * decides what that means.
 */

/** One job of a bulk call: its id, or skipped because its dedupe key is already queued. */
export type BatchItemResult = { readonly id: string; readonly replayed?: true } | 'duplicate';

export type RpcResult =
  /** `replayed`: the ledger knew the message; the job is the one its first delivery made. */
  | { readonly kind: 'enqueued'; readonly jobId: string; readonly replayed?: true }
  /** The bulk function skipped the job: its dedupe key is already queued or picked. */
  | { readonly kind: 'duplicate' }
  | {
      readonly kind: 'http_error';
      readonly status: number;
      /** SQLSTATE or PGRSTnnn; null when the body is not a PostgREST error (e.g. a proxy page). */
      readonly code: string | null;
      readonly message: string;
      readonly details: string | null;
      readonly hint: string | null;
      /** From Retry-After; 0 when absent (PostgREST 13+ always sends 0). */
      readonly retryAfterMs: number;
    }
  /** The request body could not be built (no memory for a buffer that large). */
  | { readonly kind: 'body_too_large'; readonly message: string }
  /** 2xx whose body is not a job id: the function is not the one we think it is. */
  | { readonly kind: 'bad_response'; readonly status: number; readonly message: string }
  | {
      readonly kind: 'network_error';
      /** errno (ECONNREFUSED, ECONNRESET, ...) or TIMEOUT. */
      readonly errno: string;
      readonly message: string;
      /** The request left this process: the job may exist even though no answer came. */
      readonly requestSent: boolean;
    };

export interface RpcClientOptions {
  readonly url: string;
  readonly function: string;
  readonly schema?: string | undefined;
  readonly timeoutMs: number;
  /** Called per request so a rotated token is picked up without a restart. */
  readonly bearerToken?: (() => string | undefined) | undefined;
  /** Upper bound of keep-alive connections; the sum of the sources' concurrency. */
  readonly maxSockets: number;
  readonly ca?: Buffer | undefined;
  /** The bulk function, for batch mode. */
  readonly batchFunction?: string | undefined;
  /** Timeout of a bulk call: it writes many jobs, so it gets its own budget. */
  readonly batchTimeoutMs?: number | undefined;
  /** The ledger's variants (sql/install-ledger.sql), for messages with an identity. */
  readonly onceFunction?: string | undefined;
  readonly batchOnceFunction?: string | undefined;
}

/** Past this a body is not an answer we can use (a bulk result for 100k jobs is ~3 MiB). */
const MAX_RESPONSE_BYTES = 16 * 1024 * 1024;
const JOB_ID = /^\s*(-?\d+)\s*$/;
/** The `_once` functions' answer, as jsonb prints it. */
const ONCE_RESULT = /^\s*\{\s*"id"\s*:\s*(-?\d+)\s*,\s*"replayed"\s*:\s*(true|false)\s*\}\s*$/;

export class RpcClient {
  readonly #options: RpcClientOptions;
  readonly #agent: http.Agent;
  readonly #transport: typeof http | typeof https;
  readonly #endpoint: string;
  readonly #target: Target;
  readonly #batchTarget: Target | undefined;
  readonly #onceTarget: Target | undefined;
  readonly #batchOnceTarget: Target | undefined;

  constructor(options: RpcClientOptions) {
    this.#options = options;
    const base = new URL(options.url);
    const rpc = (fn: string): URL => rpcUrl(base, fn);
    const target = rpc(options.function);
    this.#endpoint = target.href;
    this.#target = targetOf(target);
    const optional = (fn: string | undefined): Target | undefined =>
      fn === undefined ? undefined : targetOf(rpc(fn));
    this.#batchTarget = optional(options.batchFunction);
    this.#onceTarget = optional(options.onceFunction);
    this.#batchOnceTarget = optional(options.batchOnceFunction);
    const secure = base.protocol === 'https:';
    this.#transport = secure ? https : http;
    const agentOptions = {
      keepAlive: true,
      maxSockets: options.maxSockets,
      maxFreeSockets: options.maxSockets,
      scheduling: 'lifo' as const,
      // Close idle sockets before PostgREST's server (Warp, 30 s) does, to avoid reusing one it
      // is about to close.
      timeout: 15_000,
    };
    this.#agent = secure
      ? new https.Agent({ ...agentOptions, ca: options.ca })
      : new http.Agent(agentOptions);
  }

  get endpoint(): string {
    return this.#endpoint;
  }

  /** A message with an identity goes to the ledger's variant; one without, to the plain function. */
  enqueue(args: EnqueueArgs): Promise<RpcResult> {
    const target = args.messageId === undefined ? this.#target : this.#onceTarget;
    if (target === undefined) throw new Error('no _once function configured for a message with an identity');
    return this.#post(target, encodeEnqueueBody(args), interpretResponse, this.#options.timeoutMs);
  }

  /** One call of the bulk function with its body, `{"jobs":[...]}` as `bulkBody` writes it. */
  postBatch(body: Buffer, once = false): Promise<RpcResult | readonly BatchItemResult[]> {
    const target = once ? this.#batchOnceTarget : this.#batchTarget;
    if (target === undefined) throw new Error(`no ${once ? '_once ' : ''}batch function configured`);
    return this.#post(
      target,
      body,
      interpretBatchResponse,
      this.#options.batchTimeoutMs ?? this.#options.timeoutMs,
    );
  }

  /** Any other function of the API, called with `body` and the single-call timeout. */
  call<T>(
    fn: string,
    body: string,
    interpret: (status: number, text: string, retryAfter: string | undefined) => T | RpcResult,
  ): Promise<T | RpcResult> {
    return this.#post(
      targetOf(rpcUrl(new URL(this.#options.url), fn)),
      body,
      interpret,
      this.#options.timeoutMs,
    );
  }

  #post<T>(
    target: Target,
    body: string | Buffer,
    interpret: (status: number, text: string, retryAfter: string | undefined) => T | RpcResult,
    timeoutMs: number,
  ): Promise<T | RpcResult> {
    const headers: http.OutgoingHttpHeaders = {
      'content-type': 'application/json',
      accept: 'application/json',
      'content-length': Buffer.byteLength(body),
    };
    if (this.#options.schema !== undefined) headers['content-profile'] = this.#options.schema;
    const token = this.#options.bearerToken?.();
    if (token !== undefined) headers.authorization = `Bearer ${token}`;

    return new Promise<T | RpcResult>((resolve) => {
      let requestSent = false;
      let settled = false;
      const finish = (result: T | RpcResult): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        resolve(result);
      };
      const req = this.#transport.request(
        { ...target, method: 'POST', agent: this.#agent, headers },
        (res) => {
          const chunks: Buffer[] = [];
          let size = 0;
          res.on('data', (chunk: Buffer) => {
            if (size < MAX_RESPONSE_BYTES) chunks.push(chunk);
            size += chunk.length;
          });
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            finish(interpret(res.statusCode ?? 0, text, res.headers['retry-after']));
          });
          res.on('error', (error) => finish(networkError(error, true)));
        },
      );
      const timer = setTimeout(() => {
        const error = Object.assign(new Error(`no response within ${timeoutMs} ms`), {
          code: 'TIMEOUT',
        });
        req.destroy(error);
      }, timeoutMs);
      req.on('finish', () => {
        requestSent = true;
      });
      req.on('error', (error) => finish(networkError(error, requestSent)));
      req.end(body);
    });
  }

  close(): void {
    this.#agent.destroy();
  }
}

/**
 * Where a call goes, as request options. Given a URL, http.request converts it on every call;
 * single mode makes a request per job, so the conversion is done once, keeping only the fields a
 * request reads (the agent copies the options again per request).
 */
type Target = Pick<ReturnType<typeof urlToHttpOptions>, 'protocol' | 'hostname' | 'port' | 'path' | 'auth'>;

function rpcUrl(base: URL, fn: string): URL {
  return new URL(`${base.pathname.replace(/\/+$/, '')}/rpc/${fn}`, base);
}

function targetOf(url: URL): Target {
  const { protocol, hostname, port, path, auth } = urlToHttpOptions(url);
  return { protocol, hostname, port, path, auth };
}

function networkError(error: unknown, requestSent: boolean): RpcResult {
  const err = toError(error);
  return { kind: 'network_error', errno: errorCode(err) ?? 'UNKNOWN', message: err.message, requestSent };
}

export function interpretResponse(status: number, body: string, retryAfter: string | undefined): RpcResult {
  if (status >= 200 && status < 300) {
    const match = JOB_ID.exec(body);
    // Kept as text: ids are BIGINT and JSON.parse would round those above 2^53.
    if (match?.[1] !== undefined) return { kind: 'enqueued', jobId: match[1] };
    const once = ONCE_RESULT.exec(body);
    if (once?.[1] !== undefined) {
      return once[2] === 'true'
        ? { kind: 'enqueued', jobId: once[1], replayed: true }
        : { kind: 'enqueued', jobId: once[1] };
    }
    return {
      kind: 'bad_response',
      status,
      message: `expected a job id, got ${JSON.stringify(body.slice(0, 200))}`,
    };
  }
  const error = parseErrorBody(body);
  return {
    kind: 'http_error',
    status,
    code: error?.code ?? null,
    message: error?.message ?? (body.trim().slice(0, 200) || `HTTP ${status}`),
    details: error?.details ?? null,
    hint: error?.hint ?? null,
    retryAfterMs: parseRetryAfter(retryAfter),
  };
}

interface PostgrestError {
  readonly code: string;
  readonly message: string;
  readonly details: string | null;
  readonly hint: string | null;
}

function parseErrorBody(body: string): PostgrestError | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch {
    return undefined;
  }
  if (typeof parsed !== 'object' || parsed === null) return undefined;
  const { code, message, details, hint } = parsed as Record<string, unknown>;
  if (typeof code !== 'string') return undefined;
  const text = (value: unknown): string | null => (typeof value === 'string' ? value : null);
  return { code, message: text(message) ?? '', details: text(details), hint: text(hint) };
}

/**
 * The bulk function's answer: a JSON array with, per job in input order, `{"id": <bigint>}`
 * (with `"replayed": true` from the ledger's variant) or `{"duplicate": true}`. Read with a scanner rather than JSON.parse so ids keep every digit.
 */
export function interpretBatchResponse(
  status: number,
  body: string,
  retryAfter: string | undefined,
): RpcResult | readonly BatchItemResult[] {
  if (status < 200 || status >= 300) return interpretResponse(status, body, retryAfter);
  const items: BatchItemResult[] = [];
  const trimmed = body.trim();
  if (!trimmed.startsWith('[') || !trimmed.endsWith(']')) {
    return {
      kind: 'bad_response',
      status,
      message: `expected an array of results, got ${JSON.stringify(body.slice(0, 200))}`,
    };
  }
  for (const element of trimmed.matchAll(/\{[^{}]*\}/g)) {
    const text = element[0];
    const id = /"id"\s*:\s*(-?\d+)/.exec(text)?.[1];
    if (id !== undefined) items.push(/"replayed"\s*:\s*true/.test(text) ? { id, replayed: true } : { id });
    else if (/"duplicate"\s*:\s*true/.test(text)) items.push('duplicate');
    else
      return {
        kind: 'bad_response',
        status,
        message: `unexpected batch result ${JSON.stringify(text.slice(0, 200))}`,
      };
  }
  return items;
}

/** Retry-After is seconds or an HTTP date; anything else counts as absent. */
export function parseRetryAfter(value: string | undefined, now: number = Date.now()): number {
  if (value === undefined) return 0;
  const trimmed = value.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed) * 1000;
  // Only the HTTP date format: Date.parse would read almost any text containing a year.
  if (!/^[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT$/.test(trimmed)) return 0;
  const date = Date.parse(trimmed);
  return Number.isNaN(date) ? 0 : Math.max(0, date - now);
}

/**
 * Sockets the client may keep open: one per call in flight across sources, twice that in batch
 * mode, where a batch PostgreSQL refuses is split in halves that run at once.
 */
export function rpcSocketBudget(config: Config): number {
  const total = config.sources.reduce((sum, s) => sum + s.concurrency, 0);
  return config.batch.enabled ? total * 2 : total;
}
