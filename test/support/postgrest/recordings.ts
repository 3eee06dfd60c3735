// The requests and answers recorded against a real PostgREST 10.1.2 (recorded-cases-10.1.2.json,
// described in postgrest-recorded-cases.md of the project's references), and what it takes to
// send one again: the JWT its setup describes and the body it abbreviates.

import { readFileSync } from 'node:fs';
import http from 'node:http';
import { SignJWT } from 'jose';

export interface RecordedCase {
  readonly id: string;
  readonly description: string;
  /** Configuration (A–F) and, for `<jwt:NAME>` placeholders, how that token was made. */
  readonly setup: string;
  readonly request: {
    readonly method: string;
    readonly path: string;
    readonly headers: Readonly<Record<string, string>>;
    /** null: no body was sent; '': an empty one. */
    readonly body: string | null;
    /** For a body too large to keep: prefix + repeat × times + suffix. */
    readonly body_expand?: { prefix: string; repeat: string; times: number; suffix: string };
  };
  readonly response: {
    /** null when no HTTP answer came back (see transport_error). */
    readonly status: number | null;
    readonly headers: Readonly<Record<string, string>>;
    readonly body: string | null;
    readonly transport_error?: string;
  };
}

export function loadRecordings(): RecordedCase[] {
  return JSON.parse(readFileSync(new URL('./recorded-cases-10.1.2.json', import.meta.url), 'utf8'));
}

export interface HttpRequest {
  readonly method: string;
  readonly path: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly body?: string | undefined;
  /** Give up (rejecting with code ETIMEDOUT) when the answer takes longer. */
  readonly timeoutMs?: number;
}

export interface HttpAnswer {
  readonly status: number;
  readonly statusMessage: string;
  readonly headers: http.IncomingHttpHeaders;
  readonly body: string;
}

/** One request on a fresh connection (no agent), so nothing stays open afterwards. */
export function httpRequest(port: number, request: HttpRequest): Promise<HttpAnswer> {
  const { method, path, headers, body } = request;
  return new Promise((resolve, reject) => {
    const outgoing = http.request(
      { host: '127.0.0.1', port, method, path, headers, agent: false },
      (response) => {
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('error', reject);
        response.on('end', () =>
          resolve({
            status: response.statusCode ?? 0,
            statusMessage: response.statusMessage ?? '',
            headers: response.headers,
            body: Buffer.concat(chunks).toString('utf8'),
          }),
        );
      },
    );
    outgoing.on('error', reject);
    if (request.timeoutMs !== undefined) {
      outgoing.setTimeout(request.timeoutMs, () =>
        outgoing.destroy(Object.assign(new Error('no answer in time'), { code: 'ETIMEDOUT' })),
      );
    }
    outgoing.end(body);
  });
}

/** The recorded request with its tokens minted (signed with `secret` unless the setup names another) and its body in full. */
export async function replayRequest(recorded: RecordedCase, secret: string): Promise<HttpRequest> {
  const { method, path, body, body_expand: expand } = recorded.request;
  const headers: Record<string, string> = { Connection: 'close' };
  for (const [name, value] of Object.entries(recorded.request.headers)) {
    const token = /<jwt:(\w+)>/.exec(value)?.[1];
    headers[name] =
      token === undefined
        ? value
        : value.replace(`<jwt:${token}>`, await mintToken(token, recorded.setup, secret));
  }
  const fullBody =
    expand === undefined ? body : expand.prefix + expand.repeat.repeat(expand.times) + expand.suffix;
  return { method, path, headers, body: fullBody ?? undefined };
}

/** Mints the token `<jwt:name>` as a case's setup describes it (header, claims, signing secret). */
export async function mintToken(name: string, setup: string, secret: string): Promise<string> {
  const at = setup.indexOf(`<jwt:${name}>`);
  if (at < 0) throw new Error(`the setup does not describe <jwt:${name}>: ${setup}`);
  const text = setup.slice(at);
  const now = Math.floor(Date.now() / 1000);
  const claims = JSON.parse(jsonAfter(text, 'claims ').replace('<now - 10 s>', String(now - 10)));
  const header = text.includes('header {')
    ? JSON.parse(jsonAfter(text, 'header '))
    : { alg: 'HS256', typ: 'JWT' };
  if (header.alg === 'none') {
    const encode = (value: unknown): string => Buffer.from(JSON.stringify(value)).toString('base64url');
    return `${encode(header)}.${encode(claims)}.`;
  }
  const signingSecret = /different secret \("([^"]+)"\)/.exec(text)?.[1] ?? secret;
  return new SignJWT(claims).setProtectedHeader(header).sign(new TextEncoder().encode(signingSecret));
}

/** The balanced {...} that follows `marker` in `text`. */
function jsonAfter(text: string, marker: string): string {
  const start = text.indexOf(marker) + marker.length;
  let depth = 0;
  for (let i = start; i < text.length; i++) {
    if (text[i] === '{') depth++;
    if (text[i] === '}' && --depth === 0) return text.slice(start, i + 1);
  }
  throw new Error(`no JSON after "${marker}" in: ${text}`);
}
