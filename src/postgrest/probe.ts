import http from 'node:http';
import https from 'node:https';
import { urlToHttpOptions } from 'node:url';
import type { Config } from '../config/config.ts';
import { errorCode, toError } from '../errors.ts';

/**
 * Proves, without enqueueing anything, that PostgREST can take the bridge's calls: it answers,
 * accepts the token, and lists each function the bridge calls with the arguments it sends.
 *
 * The evidence is PostgREST's OpenAPI root (`GET /`, Accept: application/openapi+json). In the
 * default `openapi-mode=follow-privileges` it lists `/rpc/<name>` only for functions the request
 * role may execute, with the parameters in the `args` body schema (`properties`, `required`).
 * The token is checked before the route, so a refused token is a 401 there too.
 *
 * When the root gives no description (`openapi-mode=disabled`: 404; a proxy that routes only
 * /rpc; `db-root-spec`), the function cannot be checked without a call that would write a job,
 * so the verdict is "reachable and authenticated, not verified": the first real call proves it.
 * With `ignore-privileges` a listed function may still refuse the role (42501 on the call).
 */

export interface ExpectedFunction {
  readonly name: string;
  /** Config key that names it, for the fix. */
  readonly key: string;
  /** Arguments in every call: the function must have them. */
  readonly always: readonly string[];
  /** Arguments sent when the message has them: the function must accept them. */
  readonly sometimes: readonly string[];
}

/** The functions the bridge calls under this config, with the arguments it sends. */
export function expectedFunctions(config: Pick<Config, 'postgrest' | 'batch'>): ExpectedFunction[] {
  const single: ExpectedFunction = {
    name: config.postgrest.function,
    key: 'postgrest.function',
    always: ['entrypoint'],
    sometimes: ['payload', 'priority', 'execute_after', 'dedupe_key', 'headers'],
  };
  if (!config.batch.enabled) return [single];
  return [single, { name: config.batch.function, key: 'batch.function', always: ['jobs'], sometimes: [] }];
}

export type ProbeFailure =
  /** No HTTP answer, or one that is not PostgREST's (5xx, a proxy page). */
  | 'unreachable'
  /** The token is refused or the role cannot be used. */
  | 'unauthorized'
  | 'function_missing'
  | 'arguments_mismatch';

export type ProbeVerdict =
  | { readonly ok: true; readonly verified: boolean; readonly reason: string }
  | { readonly ok: false; readonly kind: ProbeFailure; readonly reason: string; readonly key?: string };

export interface ProbeReport {
  readonly verdict: ProbeVerdict;
  /** The endpoint's clock (HTTP Date header), ms since the epoch. */
  readonly serverDate?: number | undefined;
  /** When the answer came, on this host's clock. */
  readonly localDate: number;
  /** The Server header, e.g. postgrest/10.1.2. */
  readonly server?: string | undefined;
}

export interface ProbeOptions {
  readonly url: string;
  readonly schema?: string | undefined;
  readonly timeoutMs: number;
  readonly ca?: Buffer | undefined;
  readonly token?: string | undefined;
  readonly functions: readonly ExpectedFunction[];
}

interface Answer {
  readonly status: number;
  readonly body: string;
  readonly date: string | undefined;
  readonly server: string | undefined;
}

const MAX_BODY_BYTES = 8 * 1024 * 1024;

export async function probeEndpoint(options: ProbeOptions): Promise<ProbeReport> {
  let answer: Answer;
  try {
    answer = await getRoot(options);
  } catch (error) {
    const err = toError(error);
    return {
      localDate: Date.now(),
      verdict: {
        ok: false,
        kind: 'unreachable',
        reason: `PostgREST does not answer: ${errorCode(err) ?? 'error'} ${err.message}`,
        key: 'postgrest.url',
      },
    };
  }
  const serverDate = answer.date === undefined ? undefined : Date.parse(answer.date);
  return {
    verdict: judgeRoot(answer.status, answer.body, options.functions),
    serverDate: Number.isNaN(serverDate) ? undefined : serverDate,
    localDate: Date.now(),
    server: answer.server,
  };
}

/** What an answer of the OpenAPI root says about the functions. Pure, for unit tests. */
export function judgeRoot(
  status: number,
  body: string,
  functions: readonly ExpectedFunction[],
): ProbeVerdict {
  const error = postgrestError(body);
  if (status === 401 || (status === 403 && error !== undefined) || error?.code === '22023') {
    const what = error === undefined ? `HTTP ${status}` : `${error.code} ${error.message}`;
    return { ok: false, kind: 'unauthorized', reason: `PostgREST refuses the token: ${what}` };
  }
  if (error?.code === 'PGRST106') {
    return {
      ok: false,
      kind: 'function_missing',
      key: 'postgrest.schema',
      reason: `PostgREST does not expose the schema: ${error.message}`,
    };
  }
  if (status >= 500 || (status >= 300 && status < 400)) {
    const what = error === undefined ? '' : `: ${error.code} ${error.message}`;
    return {
      ok: false,
      kind: 'unreachable',
      reason: `PostgREST answers HTTP ${status}${what}`,
      key: 'postgrest.url',
    };
  }
  const spec = status >= 200 && status < 300 ? parseSpec(body) : undefined;
  if (spec === undefined) {
    return {
      ok: true,
      verified: false,
      reason: `endpoint reachable and token accepted; functions not verified (no OpenAPI description, HTTP ${status}): the first call proves them`,
    };
  }
  for (const fn of functions) {
    const problem = judgeFunction(spec, fn);
    if (problem !== undefined) return problem;
  }
  return {
    ok: true,
    verified: true,
    reason: `endpoint lists ${functions.map((fn) => fn.name).join(' and ')} with the arguments the bridge sends`,
  };
}

interface Spec {
  readonly paths: Record<string, unknown>;
}

function parseSpec(body: string): Spec | undefined {
  try {
    const parsed: unknown = JSON.parse(body);
    if (typeof parsed !== 'object' || parsed === null) return undefined;
    const { paths } = parsed as { paths?: unknown };
    if (typeof paths !== 'object' || paths === null) return undefined;
    return { paths: paths as Record<string, unknown> };
  } catch {
    return undefined;
  }
}

function judgeFunction(spec: Spec, fn: ExpectedFunction): ProbeVerdict | undefined {
  const args = bodySchema(spec.paths[`/rpc/${fn.name}`]);
  if (args === undefined) {
    const listed = Object.keys(spec.paths)
      .filter((path) => path.startsWith('/rpc/'))
      .map((path) => path.slice('/rpc/'.length));
    const others = listed.length === 0 ? 'none' : listed.slice(0, 10).join(', ');
    return {
      ok: false,
      kind: 'function_missing',
      key: fn.key,
      reason: `PostgREST lists no function ${fn.name} callable by this role (it lists: ${others})`,
    };
  }
  const missing = [...fn.always, ...fn.sometimes].filter((name) => !args.properties.includes(name));
  const extra = args.required.filter((name) => !fn.always.includes(name));
  if (missing.length === 0 && extra.length === 0) return undefined;
  const parts = [
    missing.length > 0 ? `has no parameter ${missing.join(', ')}` : '',
    extra.length > 0 ? `requires ${extra.join(', ')}, which the bridge does not always send` : '',
  ].filter((part) => part !== '');
  return {
    ok: false,
    kind: 'arguments_mismatch',
    key: fn.key,
    reason: `${fn.name} ${parts.join(' and ')} (its parameters: ${args.properties.join(', ') || 'none'})`,
  };
}

/** The `args` body parameter of the POST item: PostgREST 10 to 14 all describe it this way. */
function bodySchema(item: unknown): { properties: string[]; required: string[] } | undefined {
  const post = (item as { post?: { parameters?: unknown } } | undefined)?.post;
  if (!Array.isArray(post?.parameters)) return undefined;
  for (const parameter of post.parameters as unknown[]) {
    const { in: where, schema } = (parameter ?? {}) as { in?: unknown; schema?: unknown };
    if (where !== 'body' || typeof schema !== 'object' || schema === null) continue;
    const { properties, required } = schema as { properties?: unknown; required?: unknown };
    return {
      properties: typeof properties === 'object' && properties !== null ? Object.keys(properties) : [],
      required: Array.isArray(required) ? required.filter((r): r is string => typeof r === 'string') : [],
    };
  }
  return undefined;
}

function postgrestError(body: string): { code: string; message: string } | undefined {
  try {
    const parsed = JSON.parse(body) as { code?: unknown; message?: unknown } | null;
    if (typeof parsed?.code !== 'string') return undefined;
    return { code: parsed.code, message: typeof parsed.message === 'string' ? parsed.message : '' };
  } catch {
    return undefined;
  }
}

function getRoot(options: ProbeOptions): Promise<Answer> {
  const base = new URL(options.url);
  const target = urlToHttpOptions(new URL(`${base.pathname.replace(/\/+$/, '')}/`, base));
  const headers: http.OutgoingHttpHeaders = { accept: 'application/openapi+json, application/json' };
  if (options.schema !== undefined) headers['accept-profile'] = options.schema;
  if (options.token !== undefined) headers.authorization = `Bearer ${options.token}`;
  const transport = base.protocol === 'https:' ? https : http;
  return new Promise<Answer>((resolve, reject) => {
    const req = transport.request(
      {
        ...target,
        method: 'GET',
        headers,
        agent: false,
        ...(options.ca === undefined ? {} : { ca: options.ca }),
      },
      (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size <= MAX_BODY_BYTES) chunks.push(chunk);
        });
        res.on('end', () => {
          clearTimeout(timer);
          resolve({
            status: res.statusCode ?? 0,
            body: Buffer.concat(chunks).toString('utf8'),
            date: res.headers.date,
            server: String(res.headers.server ?? '') || undefined,
          });
        });
        res.on('error', reject);
      },
    );
    // One deadline for the whole exchange: a connect that hangs is as dead as a refused one.
    const timer = setTimeout(() => {
      req.destroy(Object.assign(new Error(`no answer within ${options.timeoutMs} ms`), { code: 'TIMEOUT' }));
    }, options.timeoutMs);
    req.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    req.end();
  });
}
