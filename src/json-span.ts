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
  if (text[i] !== '{') return spans;
  i = skipWhitespace(text, i + 1);
  while (i < text.length && text[i] !== '}') {
    const keyEnd = skipString(text, i);
    const key = JSON.parse(text.slice(i, keyEnd)) as string;
    i = skipWhitespace(text, keyEnd) + 1; // the ':'
    const valueStart = skipWhitespace(text, i);
    const valueEnd = skipValue(text, valueStart);
    // Later duplicates win, as in JSON.parse and in PostgreSQL's json_to_record.
    spans.set(key, [valueStart, valueEnd]);
    i = skipWhitespace(text, valueEnd);
    if (text[i] === ',') i = skipWhitespace(text, i + 1);
  }
  return spans;
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
    const c = text[i];
    if (c === '\\') i += 2;
    else if (c === '"') return i + 1;
    else i++;
  }
  return i;
}

function skipValue(text: string, from: number): number {
  const first = text[from];
  if (first === '"') return skipString(text, from);
  if (first === '{' || first === '[') {
    let depth = 0;
    let i = from;
    while (i < text.length) {
      const c = text[i];
      if (c === '"') {
        i = skipString(text, i);
        continue;
      }
      if (c === '{' || c === '[') depth++;
      else if (c === '}' || c === ']') {
        depth--;
        if (depth === 0) return i + 1;
      }
      i++;
    }
    return i;
  }
  let i = from;
  while (i < text.length && !',}] \t\n\r'.includes(text[i] as string)) i++;
  return i;
}
