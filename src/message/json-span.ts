/**
 * Finds where each member value of a top-level JSON object sits in the source text.
 *
 * The envelope's `payload` (when it is an object or array) and `headers` are forwarded as the
 * publisher wrote them, byte for byte: re-serialising a parsed value would round integers above
 * 2^53 and drop formatting. The text must already be known to be valid JSON (JSON.parse
 * succeeded), so this scanner only needs to skip over values, not validate them.
 */
export function topLevelSpans(text: string): Map<string, readonly [number, number]> {
  const spans = new Map<string, readonly [number, number]>();
  let i = skipWhitespace(text, 0);
  if (text.charCodeAt(i) !== OPEN_BRACE) return spans;
  i = skipWhitespace(text, i + 1);
  while (i < text.length && text.charCodeAt(i) !== CLOSE_BRACE) {
    const keyEnd = skipString(text, i);
    const key = readKey(text, i, keyEnd);
    i = skipWhitespace(text, keyEnd) + 1; // the ':'
    const valueStart = skipWhitespace(text, i);
    const valueEnd = skipValue(text, valueStart);
    // Later duplicates win, as in JSON.parse and in PostgreSQL's json_to_record.
    spans.set(key, [valueStart, valueEnd]);
    i = skipWhitespace(text, valueEnd);
    if (text.charCodeAt(i) === COMMA) i = skipWhitespace(text, i + 1);
  }
  return spans;
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COMMA = 0x2c;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;

/** A key without escapes is its own text; only an escaped one needs JSON.parse. */
function readKey(text: string, start: number, end: number): string {
  const inner = text.slice(start + 1, end - 1);
  return inner.includes('\\') ? (JSON.parse(text.slice(start, end)) as string) : inner;
}

function skipWhitespace(text: string, from: number): number {
  let i = from;
  while (i < text.length) {
    const c = text.charCodeAt(i);
    if (c !== 0x20 && c !== 0x0a && c !== 0x0d && c !== 0x09) break;
    i++;
  }
  return i;
}

/** `from` is at the opening quote; returns the index after the closing quote. */
function skipString(text: string, from: number): number {
  let i = from + 1;
  while (i < text.length) {
    const c = text.charCodeAt(i);
    if (c === BACKSLASH) i += 2;
    else if (c === QUOTE) return i + 1;
    else i++;
  }
  return i;
}

function skipValue(text: string, from: number): number {
  const first = text.charCodeAt(from);
  if (first === QUOTE) return skipString(text, from);
  if (first === OPEN_BRACE || first === OPEN_BRACKET) {
    let depth = 0;
    let i = from;
    while (i < text.length) {
      const c = text.charCodeAt(i);
      if (c === QUOTE) {
        i = skipString(text, i);
        continue;
      }
      if (c === OPEN_BRACE || c === OPEN_BRACKET) depth++;
      else if (c === CLOSE_BRACE || c === CLOSE_BRACKET) {
        depth--;
        if (depth === 0) return i + 1;
      }
      i++;
    }
    return i;
  }
  // A number, true, false or null: it ends at the next delimiter or whitespace.
  let i = from;
  while (i < text.length) {
    const c = text.charCodeAt(i);
    if (
      c === COMMA ||
      c === CLOSE_BRACE ||
      c === CLOSE_BRACKET ||
      c === 0x20 ||
      c === 0x0a ||
      c === 0x0d ||
      c === 0x09
    )
      break;
    i++;
  }
  return i;
}
