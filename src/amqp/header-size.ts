/**
 * The encoded size of an AMQP field table, as amqplib writes it, rounded up. amqplib encodes the
 * properties of a publish into a fixed 64 KiB scratch buffer and throws a RangeError past it; the
 * dead letter of a message with large headers must be trimmed before that, not fail for good.
 */

/** What the headers of one publish may take; the rest of the properties fit in what is left. */
export const MAX_HEADERS_BYTES = 60_000;

export function fieldTableSize(table: Readonly<Record<string, unknown>>): number {
  let size = 4;
  for (const [key, value] of Object.entries(table)) {
    if (value === undefined) continue;
    size += 1 + Buffer.byteLength(key) + fieldValueSize(value);
  }
  return size;
}

/** One value with its type byte. Numbers count as 8 bytes whatever amqplib picks. */
export function fieldValueSize(value: unknown): number {
  if (typeof value === 'string') return 5 + Buffer.byteLength(value);
  if (typeof value === 'number' || typeof value === 'bigint' || value instanceof Date) return 9;
  if (typeof value === 'boolean' || value === null || value === undefined) return 2;
  if (Buffer.isBuffer(value)) return 5 + value.length;
  if (Array.isArray(value)) return 5 + value.reduce((sum: number, item) => sum + fieldValueSize(item), 0);
  if (typeof value === 'object') {
    const typed = value as { readonly '!'?: unknown; readonly value?: unknown };
    if (typeof typed['!'] === 'string') return 1 + fieldValueSize(typed.value);
    return 1 + fieldTableSize(value as Record<string, unknown>);
  }
  return 9;
}
