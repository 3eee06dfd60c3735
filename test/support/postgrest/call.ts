// The SQL of one RPC call, shaped like PostgREST's: the JSON body is one `json` parameter,
// unpacked by json_to_record(set) with the parameter types from the schema cache, and the
// function is called with named arguments for the keys that were sent only. The result is
// aggregated by json_agg, so PostgreSQL prints the body (a bigint keeps all its digits).

import type pg from 'pg';
import type { Arguments } from './body.ts';
import { errors } from './errors.ts';
import type { Routine } from './schema-cache.ts';

export interface CallPlan {
  readonly routine: Routine;
  readonly args: Arguments;
  /** Pass the body whole to the routine's only parameter (unnamed, or Prefer: params=single-object). */
  readonly wholeBody: boolean;
  /** Prefer: params=multiple-objects: one call per array element, the body is an array. */
  readonly multipleObjects: boolean;
}

export interface PreparedCall {
  /** Prepared statement name, unique per text for the life of the process. */
  readonly name: string;
  readonly text: string;
  readonly values: unknown[];
}

export function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

/** Statement texts by call shape, so each shape is built and prepared once per connection. */
export class CallStatements {
  readonly #texts = new Map<string, { readonly name: string; readonly text: string }>();
  #next = 0;

  prepare(plan: CallPlan): PreparedCall {
    const { routine, args } = plan;
    const keys = args.kind === 'json' ? args.keys : [];
    const params = plan.wholeBody
      ? routine.params
      : routine.params.filter((param) => keys.includes(param.name));
    const shape = args.kind === 'json' ? args.shape : 'raw';
    const key = [
      routine.schema,
      routine.name,
      routine.returnsSet,
      plan.wholeBody,
      plan.multipleObjects,
      shape,
      ...params.map((param) => `${param.name}:${param.type}`),
    ].join('\u0000');
    let statement = this.#texts.get(key);
    if (statement === undefined) {
      statement = { name: `pgrst_call_${this.#next++}`, text: callText(plan, params) };
      this.#texts.set(key, statement);
    }
    return { ...statement, values: params.length === 0 ? [] : [parameterValue(args)] };
  }
}

/** The one statement parameter: the JSON text, or a raw body (bytes for bytea, else text). */
function parameterValue(args: Arguments): string | Buffer {
  if (args.kind === 'json') return args.json;
  return args.contentKind === 'octet' ? args.body : args.body.toString('utf8');
}

function callText(plan: CallPlan, params: Routine['params']): string {
  const { routine, args } = plan;
  const fn = `${quoteIdent(routine.schema)}.${quoteIdent(routine.name)}`;
  let call = `${fn}()`;
  let source = '';
  const [first] = params;
  if (plan.wholeBody && first !== undefined) {
    call = `${fn}($1::${first.type})`;
  } else if (params.length > 0) {
    const array = args.kind === 'json' && args.shape === 'array';
    const columns = params.map((param) => `${quoteIdent(param.name)} ${param.type}`).join(', ');
    const named = params
      .map((param) => `${quoteIdent(param.name)} := _.${quoteIdent(param.name)}`)
      .join(', ');
    call = `${fn}(${named})`;
    source = ` FROM pg_catalog.${array ? 'json_to_recordset' : 'json_to_record'}($1::json) AS _(${columns})`;
    // Without params=multiple-objects only the first element of an array is used.
    if (array && !plan.multipleObjects) source += ' LIMIT 1';
  }
  const body =
    routine.returnsSet || plan.multipleObjects
      ? `coalesce(pg_catalog.json_agg(_postgrest_t.pgrst_scalar)::text, '[]')`
      : `coalesce((pg_catalog.json_agg(_postgrest_t.pgrst_scalar)->0)::text, 'null')`;
  return `SELECT pg_catalog.count(*)::int AS page_total, ${body} AS body FROM (SELECT ${call} AS pgrst_scalar${source}) _postgrest_t`;
}

/** Settings PostgREST applies at the start of every request transaction. */
export interface RequestSettings {
  readonly readOnly: boolean;
  readonly searchPath: string;
  readonly role: string;
  readonly claims: string;
  readonly method: string;
  readonly path: string;
  /** JSON object of the request headers, lower-case names, without Cookie. */
  readonly headers: string;
  /** JSON object of the cookies. */
  readonly cookies: string;
}

export interface CallResult {
  readonly pageTotal: number;
  readonly body: string;
}

export interface CallOptions {
  /** End with ROLLBACK instead of COMMIT (db-tx-end / Prefer: tx=rollback). */
  readonly rollback: boolean;
  /** application/vnd.pgrst.object+json: exactly one row or PGRST116. */
  readonly singular: boolean;
}

/** BEGIN, the request settings, the call, then COMMIT or ROLLBACK; any failure rolls back. */
export async function runCall(
  client: pg.PoolClient,
  settings: RequestSettings,
  call: PreparedCall,
  options: CallOptions,
): Promise<CallResult> {
  try {
    // One round trip for BEGIN and the settings; the values are escaped by the driver.
    await client.query(setupText(client, settings));
    const { rows } = await client.query<{ page_total: number; body: string }>(call);
    const [row] = rows;
    const result = { pageTotal: row?.page_total ?? 0, body: row?.body ?? 'null' };
    if (options.singular && result.pageTotal !== 1) throw errors.singularity(result.pageTotal);
    if (options.rollback) {
      // Deferred constraints still report their violations, as with a commit.
      await client.query('SET CONSTRAINTS ALL IMMEDIATE');
      await client.query('ROLLBACK');
    } else {
      await client.query('COMMIT');
    }
    return result;
  } catch (error: unknown) {
    await client.query('ROLLBACK').catch(() => {});
    throw error;
  }
}

function setupText(client: pg.PoolClient, settings: RequestSettings): string {
  const set = (name: string, value: string): string =>
    `pg_catalog.set_config('${name}', ${client.escapeLiteral(value)}, true)`;
  return (
    `BEGIN ${settings.readOnly ? 'READ ONLY' : 'READ WRITE'}; SELECT ` +
    [
      set('search_path', settings.searchPath),
      set('role', settings.role),
      set('request.jwt.claims', settings.claims),
      set('request.method', settings.method),
      set('request.path', settings.path),
      set('request.headers', settings.headers),
      set('request.cookies', settings.cookies),
    ].join(', ')
  );
}
