// Request bodies of an RPC call: which content types are accepted and how each becomes the
// set of argument names plus the JSON text that PostgreSQL unpacks with json_to_record(set).
// The JSON text is the body as sent, so conversions (and their errors) are PostgreSQL's own.

import { aesonErrorMessage } from './aeson.ts';
import { errors, type Flavor } from './errors.ts';

export type ContentKind = 'json' | 'form' | 'csv' | 'text' | 'xml' | 'octet';

/** Arguments read from a body or a query string. */
export interface JsonArguments {
  readonly kind: 'json';
  /** JSON text for json_to_record (object) or json_to_recordset (array). */
  readonly json: string;
  readonly shape: 'object' | 'array' | 'none';
  readonly keys: readonly string[];
}

/** A body passed whole to a function with a single unnamed text, xml or bytea parameter. */
export interface RawArgument {
  readonly kind: 'raw';
  readonly contentKind: 'text' | 'xml' | 'octet';
  readonly body: Buffer;
}

export type Arguments = JsonArguments | RawArgument;

const CONTENT_KINDS: Readonly<Record<string, ContentKind>> = {
  'application/json': 'json',
  'application/x-www-form-urlencoded': 'form',
  'text/csv': 'csv',
  'text/plain': 'text',
  'text/xml': 'xml',
  'application/octet-stream': 'octet',
};

/** The media type without parameters, lower-cased; a missing Content-Type means JSON. */
function mediaType(header: string | undefined): string {
  if (header === undefined) return 'application/json';
  return (header.split(';', 1)[0] ?? '').trim().toLowerCase();
}

/** Content kind of a request body, or PGRST102 for a type PostgREST does not read. */
export function contentKind(header: string | undefined): ContentKind {
  const type = mediaType(header);
  const kind = CONTENT_KINDS[type];
  if (kind === undefined) throw errors.invalidBody(`Content-Type not acceptable: ${type}`);
  return kind;
}

const NO_ARGUMENTS: JsonArguments = { kind: 'json', json: '{}', shape: 'none', keys: [] };

export function parseBody(kind: ContentKind, body: Buffer, flavor: Flavor): Arguments {
  switch (kind) {
    case 'json':
      return body.length === 0 ? NO_ARGUMENTS : jsonArguments(body.toString('utf8'), flavor);
    case 'form':
      return fromRecord(Object.fromEntries(new URLSearchParams(body.toString('utf8'))));
    case 'csv':
      return fromRows(parseCsv(body.toString('utf8')));
    default:
      return { kind: 'raw', contentKind: kind, body };
  }
}

/** Arguments from name → value pairs (form fields, query string). */
export function fromRecord(record: Readonly<Record<string, string>>): JsonArguments {
  const keys = Object.keys(record);
  return keys.length === 0
    ? NO_ARGUMENTS
    : { kind: 'json', json: JSON.stringify(record), shape: 'object', keys };
}

function jsonArguments(text: string, flavor: Flavor): JsonArguments {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw errors.invalidBody(flavor === 'v14' ? 'Empty or invalid json' : aesonErrorMessage(text));
  }
  if (Array.isArray(value)) return fromRows(value, text);
  if (typeof value === 'object' && value !== null) {
    return { kind: 'json', json: text, shape: 'object', keys: Object.keys(value) };
  }
  return NO_ARGUMENTS;
}

function fromRows(rows: readonly unknown[], text?: string): JsonArguments {
  const [first] = rows;
  if (first === undefined) return NO_ARGUMENTS;
  const keys = objectKeys(first);
  const signature = [...keys].sort().join('\u0000');
  for (const row of rows) {
    if ([...objectKeys(row)].sort().join('\u0000') !== signature) {
      throw errors.invalidBody('All object keys must match');
    }
  }
  return { kind: 'json', json: text ?? JSON.stringify(rows), shape: 'array', keys };
}

function objectKeys(value: unknown): readonly string[] {
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? Object.keys(value) : [];
}

/** RFC 4180 CSV with a header line; every field is text. */
function parseCsv(text: string): Record<string, string>[] {
  const records: string[][] = [];
  let record: string[] = [];
  let field = '';
  let quoted = false;
  const endField = (): void => {
    record.push(field);
    field = '';
  };
  const endRecord = (): void => {
    endField();
    records.push(record);
    record = [];
  };
  for (let i = 0; i < text.length; i++) {
    const char = text[i];
    if (quoted && char === '"' && text[i + 1] === '"') {
      field += '"';
      i++;
    } else if (char === '"') {
      quoted = !quoted;
    } else if (quoted) {
      field += char;
    } else if (char === ',') {
      endField();
    } else if (char === '\n' || char === '\r') {
      if (char === '\r' && text[i + 1] === '\n') i++;
      endRecord();
    } else {
      field += char;
    }
  }
  if (field !== '' || record.length > 0) endRecord();
  const [header = [], ...rows] = records;
  return rows.map((row) => Object.fromEntries(header.map((name, i) => [name, row[i] ?? ''])));
}
