import { readFileSync, statSync } from 'node:fs';
import { SignJWT } from 'jose';
import type { Logger } from 'pino';
import type { Config } from '../config/config.ts';
import { bearerTokenText } from '../config/postgrest-schema.ts';
import { ConfigError, toError } from '../errors.ts';
import type { RpcResult } from './client.ts';

/**
 * Where the bearer token for PostgREST comes from: a static value, a file (a mounted secret that
 * is rotated in place), or short-lived JWTs the bridge mints itself with the shared HS256 secret
 * and a `role` claim. `token()` is synchronous and cheap, because it runs on every request.
 */
export interface TokenSource {
  token(): string | undefined;
  /** Re-reads or re-mints now, e.g. after PostgREST answered 401. */
  refresh(): Promise<void>;
  close(): void;
}

/** How often a token file is checked for a new version. */
const FILE_CHECK_MS = 5000;

export async function createTokenSource(
  postgrest: Config['postgrest'],
  logger: Logger,
  now: () => number = Date.now,
): Promise<TokenSource | undefined> {
  if (postgrest.bearerToken !== undefined) {
    const token = postgrest.bearerToken;
    return { token: () => token, refresh: async () => undefined, close: () => undefined };
  }
  if (postgrest.bearerTokenFile !== undefined) return fileTokenSource(postgrest.bearerTokenFile, logger);
  if (postgrest.jwt !== undefined) return jwtTokenSource(postgrest.jwt, logger, now);
  return undefined;
}

function fileTokenSource(path: string, logger: Logger): TokenSource {
  const read = (): { token: string; version: string } => {
    const stat = statSync(path);
    const parsed = bearerTokenText.safeParse(readFileSync(path, 'utf8'));
    if (!parsed.success) throw new Error(`the token ${parsed.error.issues[0]?.message ?? 'is invalid'}`);
    return { token: parsed.data, version: `${stat.mtimeMs}:${stat.size}:${stat.ino}` };
  };
  let current: { token: string; version: string };
  try {
    current = read();
  } catch (error) {
    throw new ConfigError([`postgrest.bearerTokenFile: cannot read ${path}: ${toError(error).message}`]);
  }
  const reload = (): void => {
    try {
      const stat = statSync(path);
      if (`${stat.mtimeMs}:${stat.size}:${stat.ino}` === current.version) return;
      current = read();
      logger.info({ path }, 'bearer token file changed; using the new token');
    } catch (error) {
      // Keep the last good token: a secret being swapped can be briefly absent.
      logger.warn(
        { err: toError(error), path },
        'cannot re-read the bearer token file; keeping the current token',
      );
    }
  };
  const timer = setInterval(reload, FILE_CHECK_MS);
  timer.unref();
  return {
    token: () => current.token,
    refresh: async () => reload(),
    close: () => clearInterval(timer),
  };
}

async function jwtTokenSource(
  jwt: NonNullable<Config['postgrest']['jwt']>,
  logger: Logger,
  now: () => number,
): Promise<TokenSource> {
  const key = new TextEncoder().encode(jwt.secret);
  const mint = async (): Promise<string> => {
    const issuedAt = Math.floor(now() / 1000);
    let builder = new SignJWT({ role: jwt.role })
      .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
      .setIssuedAt(issuedAt)
      .setExpirationTime(issuedAt + jwt.expiresInSeconds);
    if (jwt.audience !== undefined) builder = builder.setAudience(jwt.audience);
    return builder.sign(key);
  };
  let current = await mint();
  let timer: NodeJS.Timeout | undefined;
  // Renew at two thirds of the lifetime, so a token in use is never close to expiring (PostgREST
  // 10 allows no clock skew at all).
  const schedule = (): void => {
    timer = setTimeout(
      () => {
        renew().catch((error: unknown) => logger.error({ err: toError(error) }, 'minting a JWT failed'));
      },
      (jwt.expiresInSeconds * 1000 * 2) / 3,
    );
    timer.unref();
  };
  const renew = async (): Promise<void> => {
    clearTimeout(timer);
    current = await mint();
    schedule();
  };
  schedule();
  return { token: () => current, refresh: renew, close: () => clearTimeout(timer) };
}

/**
 * A 401 may only mean the token went stale (rotated file, expired JWT): refresh once and try
 * again before the answer counts as an endpoint fault. Concurrent 401s share one refresh.
 */
export function withTokenRefresh<A, R>(
  call: (request: A) => Promise<R | RpcResult>,
  tokens: TokenSource,
): (request: A) => Promise<R | RpcResult> {
  let refreshing: Promise<void> | undefined;
  const refresh = (): Promise<void> => {
    refreshing ??= tokens.refresh().finally(() => {
      refreshing = undefined;
    });
    return refreshing;
  };
  return async (request) => {
    const result = await call(request);
    if (!isUnauthorized(result)) return result;
    await refresh();
    return call(request);
  };
}

function isUnauthorized(result: unknown): boolean {
  return (
    typeof result === 'object' &&
    result !== null &&
    (result as { kind?: unknown }).kind === 'http_error' &&
    (result as { status?: unknown }).status === 401
  );
}
