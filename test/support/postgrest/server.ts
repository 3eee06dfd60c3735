// A PostgREST-compatible RPC server for tests and benchmarks, backed by a real PostgreSQL.
// It answers `/rpc/<function>` like PostgREST 10.1.2 (flavour '10.1.2', the default) or v14
// ('v14'), checking a request in PostgREST's order: JWT → schema cache → path → method →
// profile header → body → function lookup → Accept → pool → SQL (one transaction per call).
//
// Usage:
//   const server = await startPostgrestServer({ dbUri, anonRole: 'pgqapi', jwtSecret });
//   await fetch(`${server.url}/rpc/fn_pgqueuer_enqueue`, { method: 'POST', ... });
//   await server.close();
//
// Until the database has been reached once and the schema cache loaded, the HTTP port is not
// opened (clients get ECONNREFUSED); `ready` settles when it is.
//
// Controls for tests:
//   stop() / start()       close the listening socket and every open connection, then reopen
//                          on the same port; clients meanwhile get ECONNREFUSED.
//   injectFault(fault)     answer matching requests with a fault (see faults.ts), for the next
//                          `times` requests or until the returned function / clearFaults().
//   setDelay(ms)           latency added to every call before it takes a connection.
//   GET /                  the OpenAPI root, listing the functions (see openapi.ts).
//   reloadSchemaCache()    like `NOTIFY pgrst, 'reload schema'`, resolved once loaded.
//   stats()                requests, answers by status, pool and worker counters.
//   close()                stops everything; idempotent.

import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { Database } from './db.ts';
import { ApiError, errors, type Flavor } from './errors.ts';
import { type Fault, FaultRegistry, type FaultRequest, faultAnswer } from './faults.ts';
import { Authenticator } from './jwt.ts';
import type { OpenApiMode } from './openapi.ts';
import { type Reply, RpcHandler, type TxEnd } from './rpc.ts';
import { ConnectionWorker } from './worker.ts';

export type { Fault, FaultKind } from './faults.ts';
export type { OpenApiMode } from './openapi.ts';
export type { TxEnd } from './rpc.ts';

export interface PostgrestServerOptions {
  /** Where to connect, as the authenticator role (a LOGIN role granted the request roles). */
  readonly dbUri: string;
  /** db-schemas; the first is the default. Default ['public']. */
  readonly schemas?: readonly string[];
  /** db-anon-role; without it anonymous requests get 401 PGRST302. */
  readonly anonRole?: string;
  /** HS256 jwt-secret; without it any token gets 500 PGRST300. */
  readonly jwtSecret?: string;
  /** jwt-aud. */
  readonly jwtAudience?: string;
  /** db-tx-end. Default 'commit'. */
  readonly txEnd?: TxEnd;
  /** db-extra-search-path. Default ['public']. */
  readonly extraSearchPath?: readonly string[];
  /** db-pool. Default 10. */
  readonly poolSize?: number;
  /** db-pool-acquisition-timeout in ms; past it 504 PGRST003. Default 10 000. */
  readonly poolAcquisitionTimeoutMs?: number;
  /** Idle pooled connections are closed after this. Default 30 000. */
  readonly poolIdleTimeoutMs?: number;
  /** db-channel for reload notifications, or false for none. Default 'pgrst'. */
  readonly channel?: string | false;
  /** Default '127.0.0.1'. */
  readonly host?: string;
  /** Default 0: any free port (then `url` is known once `ready` has settled). */
  readonly port?: number;
  /** Latency added to each call, in ms. Default 0. */
  readonly delayMs?: number;
  /** Default '10.1.2'. */
  readonly flavor?: Flavor;
  /** openapi-mode: what `GET /` lists. Default 'follow-privileges'. */
  readonly openApiMode?: OpenApiMode;
  /** application_name of the pooled connections; the listener adds " listener". Default 'postgrest'. */
  readonly applicationName?: string;
}

export interface ServerStats {
  readonly requests: number;
  /** Answers by HTTP status; 'reset' and 'hang' for faults that gave none. */
  readonly byStatus: Readonly<Record<string, number>>;
  /** Pooled connections seen dying. */
  readonly brokenConnections: number;
  /** Connection worker attempts (start-up and recoveries) and how many failed. */
  readonly connectionAttempts: number;
  readonly failedConnectionAttempts: number;
  readonly schemaCacheLoads: number;
  /** The connection worker is trying to reach the database. */
  readonly recovering: boolean;
  readonly listening: boolean;
}

export class PostgrestServer {
  /** Settles when the HTTP port is open for the first time; rejects if closed before. */
  readonly ready: Promise<void>;
  readonly #flavor: Flavor;
  readonly #host: string;
  #port: number;
  #delayMs: number;
  readonly #db: Database;
  readonly #worker: ConnectionWorker;
  readonly #rpc: RpcHandler;
  readonly #faults = new FaultRegistry();
  readonly #http: Server;
  #listening = false;
  #closing: Promise<void> | undefined;
  #requests = 0;
  #byStatus: Record<string, number> = {};

  constructor(options: PostgrestServerOptions) {
    this.#flavor = options.flavor ?? '10.1.2';
    const schemas = options.schemas ?? ['public'];
    this.#host = options.host ?? '127.0.0.1';
    this.#port = options.port ?? 0;
    this.#delayMs = options.delayMs ?? 0;
    const applicationName = options.applicationName ?? 'postgrest';
    this.#db = new Database({
      connectionString: options.dbUri,
      poolSize: options.poolSize ?? 10,
      acquisitionTimeoutMs: options.poolAcquisitionTimeoutMs ?? 10_000,
      idleTimeoutMs: options.poolIdleTimeoutMs ?? 30_000,
      applicationName,
      flavor: this.#flavor,
    });
    this.#worker = new ConnectionWorker({
      db: this.#db,
      schemas,
      connectionString: options.dbUri,
      applicationName,
      channel: options.channel === false ? undefined : (options.channel ?? 'pgrst'),
      flavor: this.#flavor,
    });
    const auth = new Authenticator({
      jwtSecret: options.jwtSecret,
      anonRole: options.anonRole,
      audience: options.jwtAudience,
      flavor: this.#flavor,
    });
    this.#rpc = new RpcHandler(
      {
        flavor: this.#flavor,
        schemas,
        extraSearchPath: options.extraSearchPath ?? ['public'],
        txEnd: options.txEnd ?? 'commit',
        openApiMode: options.openApiMode ?? 'follow-privileges',
        address: () => ({ host: this.#host, port: this.#port }),
      },
      auth,
      this.#db,
      this.#worker,
    );
    this.#http = createServer({ keepAliveTimeout: 30_000 }, (req, res) => {
      this.#handle(req, res).catch((error: unknown) => {
        res.destroy(error instanceof Error ? error : undefined);
      });
    });
    this.ready = this.#worker.run().then(() => this.start());
    // Callers that never await `ready` (a server whose database stays away) must not crash the process.
    this.ready.catch(() => {});
  }

  get port(): number {
    return this.#port;
  }

  get url(): string {
    if (this.#port === 0) throw new Error('the server has no port yet: await `ready` or pass `port`');
    return `http://${this.#host}:${this.#port}`;
  }

  get listening(): boolean {
    return this.#listening;
  }

  stats(): ServerStats {
    const { attempts, failedAttempts, cacheLoads } = this.#worker.counters;
    return {
      requests: this.#requests,
      byStatus: { ...this.#byStatus },
      brokenConnections: this.#db.brokenConnections,
      connectionAttempts: attempts,
      failedConnectionAttempts: failedAttempts,
      schemaCacheLoads: cacheLoads,
      recovering: this.#worker.running,
      listening: this.#listening,
    };
  }

  resetStats(): void {
    this.#requests = 0;
    this.#byStatus = {};
  }

  setDelay(ms: number): void {
    this.#delayMs = ms;
  }

  injectFault(fault: Fault): () => void {
    return this.#faults.add(fault);
  }

  clearFaults(): void {
    this.#faults.clear();
  }

  reloadSchemaCache(): Promise<void> {
    return this.#worker.reloadSchemaCache();
  }

  /** Opens the HTTP port (again, on the same port after stop()). */
  async start(): Promise<void> {
    if (this.#closing !== undefined) throw new Error('the server is closed');
    if (this.#listening) return;
    await new Promise<void>((resolve, reject) => {
      this.#http.once('error', reject);
      this.#http.listen(this.#port, this.#host, () => {
        this.#http.off('error', reject);
        resolve();
      });
    });
    this.#port = (this.#http.address() as AddressInfo).port;
    this.#listening = true;
  }

  /** Closes the HTTP port and every client connection; the database side keeps running. */
  async stop(): Promise<void> {
    if (!this.#listening) return;
    this.#listening = false;
    const closed = new Promise<void>((resolve) => this.#http.close(() => resolve()));
    this.#http.closeAllConnections();
    await closed;
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
      await this.stop();
      await this.#worker.close();
      await this.#db.close();
    })();
    return this.#closing;
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    this.#requests++;
    const body = await readBody(req);
    const url = req.url ?? '/';
    const queryAt = url.indexOf('?');
    const path = queryAt < 0 ? url : url.slice(0, queryAt);
    const faultRequest: FaultRequest = { method: req.method ?? '', path, headers: req.headers };
    const fault = this.#faults.take(faultRequest, 'before-call');
    if (fault !== undefined) return this.#answerFault(res, fault);
    if (this.#delayMs > 0) await sleep(this.#delayMs);
    let reply: Reply;
    try {
      reply = await this.#rpc.respond(req, path, queryAt < 0 ? '' : url.slice(queryAt + 1), body);
    } catch (error: unknown) {
      reply = this.#errorReply(error instanceof ApiError ? error : errors.internal(String(error)));
    }
    const late = reply.status < 300 ? this.#faults.take(faultRequest, 'after-commit') : undefined;
    if (late !== undefined) return this.#answerFault(res, late);
    this.#send(res, reply);
  }

  /** The answer for a PostgREST error; `real` errors of the database side start the connection worker. */
  #errorReply(error: ApiError, real = true): Reply {
    const headers: Record<string, string> = {
      'Content-Type': 'application/json; charset=utf-8',
      ...error.headers,
    };
    if (error.status === 503) {
      headers['Retry-After'] = String(this.#worker.retryAfterSeconds);
      // As PostgREST does after a 503, look for the database again.
      if (real) this.#worker.run().catch(() => {});
    }
    if (this.#flavor === 'v14' && error.code !== '')
      headers['Proxy-Status'] = `PostgREST; error=${error.code}`;
    return { status: error.status, statusText: error.statusText, headers, body: error.body() };
  }

  #answerFault(res: ServerResponse, kind: Fault['kind']): void {
    const answer = faultAnswer(kind, this.#flavor, this.#db.target);
    if (answer === 'reset' || answer === 'hang') {
      this.#count(answer);
      if (answer === 'reset') res.destroy();
      return;
    }
    this.#send(
      res,
      answer instanceof ApiError
        ? this.#errorReply(answer, false)
        : { status: answer.status, headers: { 'Content-Type': answer.contentType }, body: answer.body },
    );
  }

  #count(status: number | string): void {
    const key = String(status);
    this.#byStatus[key] = (this.#byStatus[key] ?? 0) + 1;
  }

  #send(res: ServerResponse, reply: Reply): void {
    this.#count(reply.status);
    res.statusCode = reply.status;
    // A reason phrase must be a single line of visible characters.
    if (reply.statusText !== undefined) res.statusMessage = reply.statusText.replace(/[^\t\x20-\x7e]/g, ' ');
    for (const [name, value] of Object.entries(reply.headers)) res.setHeader(name, value);
    res.setHeader('Server', this.#flavor === 'v14' ? 'postgrest/14.17' : 'postgrest/10.1.2');
    if (this.#flavor === 'v14') {
      res.end(reply.body);
      return;
    }
    // 10.1.2 streams every answer (chunked, no Content-Length).
    if (reply.body !== '') res.write(reply.body);
    res.end();
  }
}

export function createPostgrestServer(options: PostgrestServerOptions): PostgrestServer {
  return new PostgrestServer(options);
}

/** Creates a server and waits until it accepts connections. */
export async function startPostgrestServer(options: PostgrestServerOptions): Promise<PostgrestServer> {
  const server = new PostgrestServer(options);
  try {
    await server.ready;
  } catch (error: unknown) {
    await server.close();
    throw error;
  }
  return server;
}

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () =>
      resolve(chunks.length === 1 && chunks[0] !== undefined ? chunks[0] : Buffer.concat(chunks)),
    );
    req.on('error', reject);
  });
}
