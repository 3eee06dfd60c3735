// The schema cache: the functions of the exposed schemas with their parameters, read from
// pg_proc when the server starts and again on `NOTIFY pgrst` (see db.ts). Requests are
// matched against it, never against the database, so a function created after the last load
// is "not found" (PGRST202) and one replaced with other parameter names fails in PostgreSQL
// (42883), exactly as with PostgREST.

import type pg from 'pg';
import { editDistance } from '../../../src/cli/args.ts';
import type { ContentKind } from './body.ts';
import { ApiError } from './errors.ts';

export interface RoutineParam {
  /** '' for an unnamed parameter. */
  readonly name: string;
  /** Type as format_type prints it with an empty search_path, usable in a column definition. */
  readonly type: string;
  /** No DEFAULT: the argument must be sent. */
  readonly required: boolean;
}

export interface Routine {
  readonly schema: string;
  readonly name: string;
  readonly params: readonly RoutineParam[];
  /** VOLATILE: POST runs it in a READ WRITE transaction, otherwise READ ONLY. */
  readonly volatile: boolean;
  /** SETOF: the body is an array even for one row. */
  readonly returnsSet: boolean;
}

// Input parameters are those with mode i, b (INOUT) or v (VARIADIC); the last
// pronargdefaults of them have defaults.
const ROUTINES_SQL = `
SELECT n.nspname AS schema, p.proname AS name, p.provolatile = 'v' AS volatile, p.proretset AS returns_set,
  coalesce(args.params, '[]') AS params
FROM pg_catalog.pg_proc p
JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
LEFT JOIN LATERAL (
  SELECT json_agg(json_build_object(
      'name', coalesce(arg.name, ''),
      'type', pg_catalog.format_type(arg.type, NULL),
      'required', arg.position <= p.pronargs - p.pronargdefaults
    ) ORDER BY arg.position) AS params
  FROM (
    SELECT row_number() OVER (ORDER BY x.ordinality) AS position, x.type, x.name
    FROM unnest(
      coalesce(p.proallargtypes, p.proargtypes::oid[]),
      coalesce(p.proargmodes, array_fill('i'::"char", ARRAY[p.pronargs])),
      p.proargnames
    ) WITH ORDINALITY AS x(type, mode, name, ordinality)
    WHERE x.mode IN ('i', 'b', 'v')
  ) arg
) args ON true
WHERE n.nspname = ANY($1::text[])
  AND p.prokind = 'f'
  AND p.prorettype NOT IN ('pg_catalog.trigger'::pg_catalog.regtype, 'pg_catalog.event_trigger'::pg_catalog.regtype)`;

interface RoutineRow {
  schema: string;
  name: string;
  volatile: boolean;
  returns_set: boolean;
  params: RoutineParam[];
}

/** Reads the cache in its own read-only transaction on `client`. */
export async function loadSchemaCache(
  client: pg.ClientBase,
  schemas: readonly string[],
): Promise<SchemaCache> {
  await client.query('BEGIN READ ONLY');
  try {
    // With an empty search_path format_type qualifies every type outside pg_catalog.
    await client.query("SELECT pg_catalog.set_config('search_path', '', true)");
    const routines = await readRoutines(client, schemas, false);
    await client.query('COMMIT');
    return new SchemaCache(routines);
  } catch (error: unknown) {
    await client.query('ROLLBACK').catch(() => {});
    throw error;
  }
}

/**
 * The routines of `schemas`, inside a transaction that has set an empty search_path;
 * `executableOnly` keeps those the current role may execute (the OpenAPI root's view).
 */
export async function readRoutines(
  client: pg.ClientBase,
  schemas: readonly string[],
  executableOnly: boolean,
): Promise<Routine[]> {
  const sql = executableOnly
    ? `${ROUTINES_SQL}\n  AND pg_catalog.has_function_privilege(p.oid, 'execute')`
    : ROUTINES_SQL;
  const { rows } = await client.query<RoutineRow>(sql, [schemas]);
  return rows.map((row) => ({
    schema: row.schema,
    name: row.name,
    params: row.params,
    volatile: row.volatile,
    returnsSet: row.returns_set,
  }));
}

export interface RoutineRequest {
  readonly schema: string;
  readonly name: string;
  /** Argument names sent in the body or query string. */
  readonly keys: readonly string[];
  /** `Prefer: params=single-object`. */
  readonly singleObject: boolean;
  /** Content kind of a POST body; undefined for GET, HEAD and OPTIONS. */
  readonly postedAs: ContentKind | undefined;
}

export interface RoutineMatch {
  readonly routine: Routine;
  /** The whole body goes to the routine's single unnamed parameter. */
  readonly wholeBody: boolean;
}

const UNNAMED_PARAM_TYPES: Readonly<Partial<Record<ContentKind, readonly string[]>>> = {
  json: ['json', 'jsonb'],
  text: ['text'],
  xml: ['xml'],
  octet: ['bytea'],
};

const RAW_KIND_NAMES: Readonly<Partial<Record<ContentKind, string>>> = {
  text: 'text',
  xml: 'xml',
  octet: 'bytea',
};

export class SchemaCache {
  /** Every routine, in load order. */
  readonly all: readonly Routine[];
  readonly #routines = new Map<string, Routine[]>();
  readonly #names = new Map<string, string[]>();

  constructor(routines: readonly Routine[]) {
    this.all = routines;
    for (const routine of routines) {
      const key = `${routine.schema}.${routine.name}`;
      const overloads = this.#routines.get(key);
      if (overloads === undefined) {
        this.#routines.set(key, [routine]);
        this.#names.set(routine.schema, [...(this.#names.get(routine.schema) ?? []), routine.name]);
      } else {
        overloads.push(routine);
      }
    }
  }

  get size(): number {
    return this.#routines.size;
  }

  /** PostgREST's findProc: the overload whose parameters fit the argument names. */
  find(request: RoutineRequest): RoutineMatch {
    const overloads = this.#routines.get(`${request.schema}.${request.name}`) ?? [];
    const rawBody = request.postedAs !== undefined && RAW_KIND_NAMES[request.postedAs] !== undefined;
    const keys = new Set(request.keys);
    const byName = overloads.filter((routine) => fitsArguments(routine, keys, request.singleObject, rawBody));
    const byBody = overloads.filter((routine) => takesWholeBody(routine, request.postedAs));
    const [first] = byName;
    if (first !== undefined && byName.length === 1) return { routine: first, wholeBody: false };
    const [onlyByBody] = byBody;
    if (byName.length === 0 && onlyByBody !== undefined && byBody.length === 1) {
      return { routine: onlyByBody, wholeBody: true };
    }
    if (byName.length === 0 && byBody.length === 0) throw this.#notFound(request, overloads, rawBody);
    throw ambiguous(byName.length > 0 ? byName : byBody);
  }

  #notFound(request: RoutineRequest, overloads: readonly Routine[], rawBody: boolean): ApiError {
    const qualified = `${request.schema}.${request.name}`;
    const keys = [...request.keys].sort();
    const withKeys =
      keys.length === 0
        ? ' without parameters'
        : ` with parameter${keys.length > 1 ? 's' : ''} ${keys.join(', ')}`;
    let searched = withKeys;
    if (request.singleObject) searched = ' with a single json/jsonb parameter';
    else if (rawBody)
      searched = ` with a single unnamed ${RAW_KIND_NAMES[request.postedAs ?? 'text']} parameter`;
    else if (request.postedAs === 'json')
      searched = `${withKeys} or with a single unnamed json/jsonb parameter`;
    const signature =
      request.singleObject || rawBody
        ? ''
        : keys.length === 0
          ? ' without parameters'
          : `(${keys.join(', ')})`;
    return new ApiError({
      status: 404,
      code: 'PGRST202',
      message: `Could not find the function ${qualified}${signature} in the schema cache`,
      details: `Searched for the function ${qualified}${searched}, but no matches were found in the schema cache.`,
      hint: this.#hint(request, overloads, keys),
    });
  }

  // A misspelt name gets the closest existing name; a known name called with the wrong
  // arguments gets the closest parameter list among its overloads.
  #hint(request: RoutineRequest, overloads: readonly Routine[], keys: readonly string[]): string | null {
    const prefix = `Perhaps you meant to call the function ${request.schema}.`;
    if (overloads.length === 0) {
      const name = closest(request.name, this.#names.get(request.schema) ?? []);
      return name === undefined ? null : `${prefix}${name}`;
    }
    const lists = overloads.map((routine) => `(${routine.params.map((param) => param.name).join(', ')})`);
    const list = closest(`(${keys.join(', ')})`, lists);
    return list === undefined ? null : `${prefix}${request.name}${list}`;
  }
}

function fitsArguments(
  routine: Routine,
  keys: ReadonlySet<string>,
  singleObject: boolean,
  rawBody: boolean,
): boolean {
  const { params } = routine;
  if (singleObject) return params.length === 1 && ['json', 'jsonb'].includes(params[0]?.type ?? '');
  if (params.length === 0) return keys.size === 0 && !rawBody;
  const names = new Set(params.map((param) => param.name));
  for (const key of keys) if (!names.has(key)) return false;
  return params.every((param) => !param.required || keys.has(param.name));
}

function takesWholeBody(routine: Routine, postedAs: ContentKind | undefined): boolean {
  const [param, ...others] = routine.params;
  if (postedAs === undefined || param === undefined || others.length > 0 || param.name !== '') return false;
  return UNNAMED_PARAM_TYPES[postedAs]?.includes(param.type) ?? false;
}

function ambiguous(candidates: readonly Routine[]): ApiError {
  const signatures = candidates.map(
    (routine) =>
      `${routine.schema}.${routine.name}(${routine.params.map((param) => `${param.name} => ${param.type}`).join(', ')})`,
  );
  return new ApiError({
    status: 300,
    code: 'PGRST203',
    message: `Could not choose the best candidate function between: ${signatures.join(', ')}`,
    hint: 'Try renaming the parameters or the function itself in the database so function overloading can be resolved',
  });
}

/** The candidate most similar to `text` by Levenshtein distance, if at least a third alike. */
function closest(text: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestScore = 0.33;
  for (const candidate of candidates) {
    const a = text.toLowerCase();
    const b = candidate.toLowerCase();
    const score = 1 - editDistance(a, b) / Math.max(a.length, b.length, 1);
    if (score >= bestScore && (best === undefined || score > bestScore)) {
      best = candidate;
      bestScore = score;
    }
  }
  return best;
}
