// The parts of an HTTP request PostgREST reads before it looks at the body: the path, the
// method, the schema profile headers, Prefer and Accept.

import type { IncomingHttpHeaders } from 'node:http';
import { errors, type Flavor } from './errors.ts';

export type RpcMethod = 'POST' | 'GET' | 'HEAD' | 'OPTIONS';

/** The function name of `/rpc/<name>`; anything else is a 404. */
export function rpcName(pathname: string, flavor: Flavor): string {
  const match = /^\/rpc\/([^/]+)$/.exec(pathname);
  if (match?.[1] === undefined) throw errors.notFound(flavor);
  try {
    return decodeURIComponent(match[1]);
  } catch {
    throw errors.notFound(flavor);
  }
}

export function rpcMethod(method: string | undefined): RpcMethod {
  switch (method) {
    case 'POST':
    case 'GET':
    case 'HEAD':
    case 'OPTIONS':
      return method;
    case 'PUT':
    case 'PATCH':
    case 'DELETE':
      throw errors.rpcMethod(method);
    default:
      throw errors.unsupportedMethod(method ?? '');
  }
}

export interface SchemaChoice {
  readonly schema: string;
  /** Whether to answer with Content-Profile. */
  readonly echo: boolean;
}

/** Content-Profile selects the schema of a POST, Accept-Profile that of the other methods. */
export function chooseSchema(
  method: RpcMethod,
  headers: IncomingHttpHeaders,
  schemas: readonly string[],
  flavor: Flavor,
): SchemaChoice {
  const value = method === 'POST' ? headers['content-profile'] : headers['accept-profile'];
  const header = Array.isArray(value) ? value.join(', ') : value;
  const [first = 'public'] = schemas;
  if (header === undefined) return { schema: first, echo: schemas.length > 1 };
  if (!schemas.includes(header)) throw errors.invalidSchema(flavor, header, schemas);
  return { schema: header, echo: true };
}

export interface Preferences {
  readonly tx: 'commit' | 'rollback' | undefined;
  /** 10.1.2 only: v13 removed both values (v11 already removed bulk calls). */
  readonly params: 'single-object' | 'multiple-objects' | undefined;
}

const NO_PREFERENCES: Preferences = { tx: undefined, params: undefined };
// Preferences v14 knows; with `handling=strict` any other one is an error there.
const V14_PREFERENCES = new Set([
  'return',
  'count',
  'resolution',
  'missing',
  'tx',
  'handling',
  'timezone',
  'max-affected',
]);

/** Prefer values of the kinds that matter for RPC; the first of each kind wins, others are ignored. */
export function preferences(header: string | string[] | undefined, flavor: Flavor): Preferences {
  if (header === undefined) return NO_PREFERENCES;
  let tx: Preferences['tx'];
  let params: Preferences['params'];
  let strict = false;
  const unknown: string[] = [];
  for (const item of (Array.isArray(header) ? header.join(',') : header).split(',')) {
    const [name = '', value = ''] = item.split('=', 2).map((part) => part.trim());
    if (name === 'tx' && (value === 'commit' || value === 'rollback')) tx ??= value;
    else if (flavor === 'v14' && name === 'handling' && value === 'strict') strict = true;
    else if (
      flavor !== 'v14' &&
      name === 'params' &&
      (value === 'single-object' || value === 'multiple-objects')
    ) {
      params ??= value;
    } else if (!V14_PREFERENCES.has(name)) unknown.push(item.trim());
  }
  if (strict && unknown.length > 0) throw errors.strictPreferences(unknown);
  return { tx, params };
}

export type ResponseMedia = 'json' | 'object';

const JSON_TYPE = 'application/json; charset=utf-8';
const OBJECT_TYPE = 'application/vnd.pgrst.object+json; charset=utf-8';

export function contentTypeOf(media: ResponseMedia): string {
  return media === 'object' ? OBJECT_TYPE : JSON_TYPE;
}

const PRODUCED: Readonly<Record<string, ResponseMedia>> = {
  '*/*': 'json',
  'application/*': 'json',
  'application/json': 'json',
  'application/vnd.pgrst.object+json': 'object',
};

/** The response media type for an Accept header, by preference order (q) then listing order. */
export function negotiate(accept: string | undefined, flavor: Flavor): ResponseMedia {
  if (accept === undefined || accept.trim() === '') return 'json';
  const ranges = accept
    .split(',')
    .map((range, index) => {
      const [type = '', ...params] = range.split(';').map((part) => part.trim());
      const q = params.find((param) => param.startsWith('q='));
      return { type: type.toLowerCase(), q: q === undefined ? 1 : Number(q.slice(2)), index };
    })
    .filter((range) => range.type !== '' && range.q > 0)
    .sort((a, b) => b.q - a.q || a.index - b.index);
  for (const range of ranges) {
    const media = PRODUCED[range.type];
    if (media !== undefined) return media;
  }
  throw errors.notAcceptable(
    flavor,
    ranges.map((range) => range.type),
  );
}
