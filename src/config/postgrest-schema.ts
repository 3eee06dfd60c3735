import { validateHeaderValue } from 'node:http';
import { z } from 'zod';
import { delayMs, identifier } from './kinds.ts';

/** The `postgrest` section: where the endpoint is, how calls authenticate, what it may take. */

/**
 * A secret rendered into the environment or a file often ends with a newline; an HTTP header
 * value cannot hold one, so it is trimmed, and what is still not a valid header value is refused
 * here rather than by every request.
 */
export const bearerTokenText = z
  .string()
  .trim()
  .min(1)
  .refine((token) => isHeaderValue(`Bearer ${token}`), 'contains characters an HTTP header cannot carry');

export function isHeaderValue(value: string): boolean {
  try {
    validateHeaderValue('authorization', value);
    return true;
  } catch {
    return false;
  }
}

const httpUrl = z
  .string()
  .regex(/^https?:\/\/[^\s/]+(\/[^\s]*)?$/, 'must be an http:// or https:// URL')
  .describe(
    'Base URL of PostgREST; the bridge posts to {url}/rpc/{function}. Env: PGQ_BRIDGE_POSTGREST_URL.',
  );

export const postgrestSchema = z
  .strictObject({
    url: httpUrl,
    function: identifier.default('fn_pgqueuer_enqueue').describe('Name of the enqueue function.'),
    schema: identifier
      .optional()
      .describe('Sent as Content-Profile to select the exposed schema that holds the function.'),
    timeoutMs: z.number().int().min(1).default(10_000).describe('Per-request timeout.'),
    probeIntervalMs: delayMs(
      'How often the endpoint is checked (OpenAPI root: reachable, token accepted, functions listed) for readiness.',
      30_000,
    ),
    dedupeConstraint: z
      .string()
      .min(1)
      .default('pgqueuer_unique_dedupe_key')
      .describe(
        "The unique index on dedupe_key: only a conflict on it means 'already queued'; any other unique violation is a failure.",
      ),
    bearerToken: bearerTokenText
      .optional()
      .describe('Static bearer token (a JWT PostgREST accepts). Secret. Env: PGQ_BRIDGE_POSTGREST_TOKEN.'),
    bearerTokenFile: z
      .string()
      .min(1)
      .optional()
      .describe('File holding the bearer token (a mounted secret); re-read when it changes and after a 401.'),
    jwt: z
      .strictObject({
        secret: z
          .string()
          .min(32, "must be at least 32 characters, as PostgREST's jwt-secret")
          .describe('HS256 secret shared with PostgREST (jwt-secret). Secret. Env: PGQ_BRIDGE_JWT_SECRET.'),
        role: z.string().min(1).describe('Database role the tokens name (the `role` claim).'),
        expiresInSeconds: z
          .number()
          .int()
          .min(10)
          .default(300)
          .describe('Token lifetime; a new one is minted well before it expires.'),
        audience: z.string().min(1).optional().describe('`aud` claim, when PostgREST sets jwt-aud.'),
      })
      .optional()
      .describe('Mint short-lived JWTs instead of using a static token.'),
    caFile: z
      .string()
      .min(1)
      .optional()
      .describe('PEM CA for an https:// PostgREST with a private certificate.'),
    dbPool: z
      .number()
      .int()
      .min(1)
      .optional()
      .describe(
        "PostgREST's db-pool setting, when known; `check-config` warns if the sources' total concurrency exceeds it.",
      ),
  })
  .superRefine((postgrest, ctx) => {
    const ways = (['bearerToken', 'bearerTokenFile', 'jwt'] as const).filter(
      (k) => postgrest[k] !== undefined,
    );
    if (ways.length > 1) {
      ctx.addIssue({
        code: 'custom',
        path: [ways[1] ?? ''],
        message: `choose one of ${ways.join(', ')}`,
      });
    }
  })
  .describe('PostgREST endpoint.');
