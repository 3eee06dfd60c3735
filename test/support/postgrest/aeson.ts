// The error texts of PostgREST 10.1.2 for a body that is not JSON: those of its JSON parser
// (aeson on attoparsec), e.g. "Error in $: not enough input. Expecting ',' or '}'".
//
// The walker below reads the body the way that parser does and fails at the same place with
// the same words: the message of the primitive that failed, ". Expecting <label>" for the
// outermost labelled parser it was inside, and up to 100 bytes of the unparsed rest with
// blanks, quotes, slashes and backslashes removed.

class ParseFailure {
  readonly message: string;
  readonly label: string | undefined;
  readonly at: number;

  constructor(message: string, label: string | undefined, at: number) {
    this.message = message;
    this.label = label;
    this.at = at;
  }
}

export function aesonErrorMessage(text: string): string {
  try {
    new AesonWalker(text).document();
    return 'Error in $: not a valid json value';
  } catch (failure: unknown) {
    if (!(failure instanceof ParseFailure)) throw failure;
    const expecting = failure.label === undefined ? '' : `. Expecting ${failure.label}`;
    const rest = [...text.slice(failure.at, failure.at + 100)]
      .filter((c) => !'\t\r "/\\'.includes(c))
      .join('')
      .split('\n', 1)[0];
    return `Error in $: ${failure.message}${expecting}${rest ? ` at '${rest}'` : ''}`;
  }
}

class AesonWalker {
  readonly #text: string;
  #pos = 0;
  readonly #labels: string[] = [];

  constructor(text: string) {
    this.#text = text;
  }

  document(): void {
    this.#value();
    this.#skipSpace();
    if (this.#pos < this.#text.length) this.#fail('endOfInput');
  }

  #fail(message: string, at = this.#pos): never {
    throw new ParseFailure(message, this.#labels[0], at);
  }

  #labelled(label: string, parse: () => void): void {
    this.#labels.push(label);
    parse();
    this.#labels.pop();
  }

  #skipSpace(): void {
    while (' \n\r\t'.includes(this.#text[this.#pos] ?? 'x')) this.#pos++;
  }

  #peek(): string {
    const char = this.#text[this.#pos];
    return char ?? this.#fail('not enough input');
  }

  #expect(chars: string, label: string): string {
    let char = '';
    this.#labelled(label, () => {
      char = this.#peek();
      if (!chars.includes(char)) this.#fail('Failed reading: satisfy');
      this.#pos++;
    });
    return char;
  }

  #value(): void {
    this.#skipSpace();
    const char = this.#peek();
    if (char === '"') {
      this.#pos++;
      this.#string();
    } else if (char === '{' || char === '[') {
      this.#pos++;
      this.#container(char === '{');
    } else if (char === 't' || char === 'f' || char === 'n') {
      this.#literal();
    } else if (char === '-' || (char >= '0' && char <= '9')) {
      this.#number();
    } else {
      this.#fail('Failed reading: not a valid json value');
    }
  }

  #container(isObject: boolean): void {
    const close = isObject ? '}' : ']';
    this.#skipSpace();
    if (this.#peek() === close) {
      this.#pos++;
      return;
    }
    for (;;) {
      if (isObject) {
        this.#labelled('object key', () => {
          if (this.#peek() !== '"') this.#fail('Failed reading: satisfy');
          this.#pos++;
          this.#string();
        });
        this.#skipSpace();
        this.#expect(':', "':'");
      }
      this.#labelled(isObject ? 'object value' : 'json list value', () => this.#value());
      this.#skipSpace();
      if (this.#expect(`,${close}`, `',' or '${close}'`) === close) return;
      this.#skipSpace();
    }
  }

  #literal(): void {
    const word = ['true', 'false', 'null'].find((w) => w[0] === this.#text[this.#pos]) ?? '';
    if (this.#text.startsWith(word, this.#pos)) {
      this.#pos += word.length;
      return;
    }
    this.#fail(word.startsWith(this.#text.slice(this.#pos)) ? 'not enough input' : 'string');
  }

  #number(): void {
    const match = /^-?(\d*)(?:\.(\d*))?(?:[eE][+-]?(\d*))?/.exec(this.#text.slice(this.#pos));
    const [whole = '', integer = '', fraction, exponent] = match ?? [];
    const start = this.#pos + (whole.startsWith('-') ? 1 : 0);
    if (integer === '') this.#fail('Failed reading: takeWhile1', start);
    if (integer.length > 1 && integer.startsWith('0'))
      this.#fail('Failed reading: leading zero', start + integer.length);
    if (fraction === '' || exponent === '')
      this.#fail('Failed reading: takeWhile1', this.#pos + whole.length);
    this.#pos += whole.length;
  }

  #string(): void {
    const text = this.#text;
    const start = this.#pos;
    let pos = start;
    while (pos < text.length && text[pos] !== '"' && text[pos] !== '\\' && text.charCodeAt(pos) >= 0x20)
      pos++;
    if (pos >= text.length) this.#fail('Failed reading: string without end', pos);
    if (text[pos] === '"') {
      this.#pos = pos + 1;
      return;
    }
    if (text.charCodeAt(pos) < 0x20) this.#fail('Failed reading: unescaped control character', pos);
    let escaped = false;
    for (; pos < text.length; pos++) {
      if (escaped) escaped = false;
      else if (text[pos] === '\\') escaped = true;
      else if (text[pos] === '"') break;
    }
    if (pos >= text.length) this.#fail('not enough input', pos);
    this.#pos = pos + 1;
    const content = text.slice(start, pos);
    if (/\\(?![\\"/bfnrt]|u[0-9a-fA-F]{4})/.test(content) || [...content].some((c) => c < ' ')) {
      this.#fail('Failed reading: Cannot decode input', this.#pos);
    }
  }
}
