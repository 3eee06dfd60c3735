// One RPC request from headers to answer, checked in PostgREST's order: JWT → schema cache →
// path → method → profile header → body → function lookup → Accept → pool → SQL.

import type { IncomingMessage } from 'node:http';
import { contentKind, fromRecord, type JsonArguments, parseBody } from './body.ts';
import { type CallPlan, CallStatements, quoteIdent, runCall } from './call.ts';
import type { Database } from './db.ts';
import { ApiError, errors, type Flavor } from './errors.ts';
import type { Authenticator, Identity } from './jwt.ts';
import { executableRoutines, type OpenApiMode, openApiDisabled, openApiReply } from './openapi.ts';
import { chooseSchema, contentTypeOf, negotiate, preferences, rpcMethod, rpcName } from './request.ts';
import type { Routine } from './schema-cache.ts';
import type { ConnectionWorker } from './worker.ts';

export type TxEnd = 'commit' | 'commit-allow-override' | 'rollback' | 'rollback-allow-override';

export interface Reply {
  readonly status: number;
  readonly statusText?: string | undefined;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string;
}

export interface RpcSettings {
  readonly flavor: Flavor;
  readonly schemas: readonly string[];
  readonly extraSearchPath: readonly string[];
  readonly txEnd: TxEnd;
  readonly openApiMode: OpenApiMode;
  /** Where the server listens, for the OpenAPI `host`. */
  readonly address: () => { readonly host: string; readonly port: number };
}

const RESERVED_QUERY_KEYS = new Set(['select', 'columns', 'order', 'limit', 'offset', 'on_conflict']);

export class RpcHandler {
  readonly #settings: RpcSettings;
  readonly #auth: Authenticator;
  readonly #db: Database;
  readonly #worker: ConnectionWorker;
  readonly #statements = new CallStatements();

  constructor(settings: RpcSettings, auth: Authenticator, db: Database, worker: ConnectionWorker) {
    this.#settings = settings;
    this.#auth = auth;
    this.#db = db;
    this.#worker = worker;
  }

  /** The answer to a request; PostgREST errors are thrown as ApiError. */
  async respond(req: IncomingMessage, path: string, query: string, body: Buffer): Promise<Reply> {
    const { flavor, schemas } = this.#settings;
    const identity = await this.#auth.authenticate(req.headers.authorization);
    const cache = this.#worker.cache;
    if (cache === undefined) throw errors.noSchemaCache();
    if (path === '/' && (req.method === 'GET' || req.method === 'HEAD')) {
      return this.#root(req, identity, cache.all);
    }
    const name = rpcName(path, flavor);
    const method = rpcMethod(req.method);
    const { schema, echo } = chooseSchema(method, req.headers, schemas, flavor);
    const prefer = preferences(req.headers.prefer, flavor);
    const posted = method === 'POST' ? contentKind(req.headers['content-type']) : undefined;
    const args = posted === undefined ? queryArguments(query) : parseBody(posted, body, flavor);
    const match = cache.find({
      schema,
      name,
      keys: args.kind === 'json' ? args.keys : [],
      singleObject: prefer.params === 'single-object',
      postedAs: posted,
    });
    if (method === 'OPTIONS') return optionsReply(match.routine);
    const media = negotiate(req.headers.accept, flavor);
    const overridable = this.#settings.txEnd.endsWith('-allow-override');
    const txEnd = overridable && prefer.tx !== undefined ? prefer.tx : this.#settings.txEnd.split('-')[0];
    const plan: CallPlan = {
      routine: match.routine,
      args,
      wholeBody: match.wholeBody || prefer.params === 'single-object',
      multipleObjects: prefer.params === 'multiple-objects',
    };
    const client = await this.#db.acquire();
    let failure: unknown;
    let result: Awaited<ReturnType<typeof runCall>>;
    try {
      result = await runCall(
        client,
        {
          readOnly: method !== 'POST' || !match.routine.volatile,
          searchPath: [schema, ...this.#settings.extraSearchPath].map(quoteIdent).join(', '),
          role: identity.role,
          claims: identity.claims,
          method,
          path,
          headers: headersJson(req),
          cookies: cookiesJson(req.headers.cookie),
        },
        this.#statements.prepare(plan),
        { rollback: txEnd === 'rollback', singular: media === 'object' },
      );
    } catch (error: unknown) {
      failure = error;
      throw error instanceof ApiError ? error : this.#db.failure(error, identity.authenticated);
    } finally {
      this.#db.release(client, failure);
    }
    const headers: Record<string, string> = {
      'Content-Type': contentTypeOf(media),
      'Content-Range': result.pageTotal > 0 ? `0-${result.pageTotal - 1}/*` : '*/*',
    };
    if (echo) headers['Content-Profile'] = schema;
    if (overridable && prefer.tx !== undefined) headers['Preference-Applied'] = `tx=${prefer.tx}`;
    return { status: 200, headers, body: method === 'HEAD' ? '' : result.body };
  }

  async #root(req: IncomingMessage, identity: Identity, cached: readonly Routine[]): Promise<Reply> {
    const { flavor, schemas, openApiMode } = this.#settings;
    if (openApiMode === 'disabled') throw openApiDisabled(flavor);
    const { schema } = chooseSchema('GET', req.headers, schemas, flavor);
    let routines = cached.filter((routine) => routine.schema === schema);
    if (openApiMode === 'follow-privileges') {
      const client = await this.#db.acquire();
      let failure: unknown;
      try {
        routines = await executableRoutines(client, identity.role, schema);
      } catch (error: unknown) {
        failure = error;
        throw error instanceof ApiError ? error : this.#db.failure(error, identity.authenticated);
      } finally {
        this.#db.release(client, failure);
      }
    }
    return openApiReply(routines, { ...this.#settings.address(), flavor }, req.method === 'HEAD');
  }
}

function queryArguments(query: string): JsonArguments {
  const record: Record<string, string> = {};
  for (const [key, value] of new URLSearchParams(query)) {
    if (!RESERVED_QUERY_KEYS.has(key)) record[key] = value;
  }
  return fromRecord(record);
}

function optionsReply(routine: Routine): Reply {
  return {
    status: 200,
    headers: { Allow: routine.volatile ? 'OPTIONS,POST' : 'OPTIONS,GET,HEAD,POST' },
    body: '',
  };
}

/** request.headers: every header but Cookie, names lower-case (as Node gives them). */
function headersJson(req: IncomingMessage): string {
  if (req.headers.cookie === undefined) return JSON.stringify(req.headers);
  const { cookie: _cookie, ...headers } = req.headers;
  return JSON.stringify(headers);
}

function cookiesJson(header: string | undefined): string {
  if (header === undefined) return '{}';
  const cookies: Record<string, string> = {};
  for (const pair of header.split(';')) {
    const at = pair.indexOf('=');
    if (at > 0) cookies[pair.slice(0, at).trim()] = pair.slice(at + 1).trim();
  }
  return JSON.stringify(cookies);
}
