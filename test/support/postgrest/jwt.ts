// Authentication as PostgREST does it: `Authorization: Bearer <HS256 JWT>` → database role.
// Error texts are those of PostgREST 10.1.2, which shows the Haskell jose library's error
// values (e.g. "JWSError JWSInvalidSignature") and checks time claims with no clock skew;
// the 'v14' flavour uses v14's own texts, PGRST303 for claims and a 30 s skew.

import { createSecretKey, type KeyObject } from 'node:crypto';
import { compactVerify } from 'jose';
import { type ApiError, errors, type Flavor } from './errors.ts';

export interface AuthSettings {
  /** HS256 secret; undefined = PostgREST without jwt-secret (a token gets PGRST300). */
  readonly jwtSecret: string | undefined;
  /** db-anon-role; undefined = anonymous requests get PGRST302. */
  readonly anonRole: string | undefined;
  /** jwt-aud: when set, the `aud` claim must contain it. */
  readonly audience: string | undefined;
  readonly flavor: Flavor;
}

export interface Identity {
  readonly role: string;
  /** Text for the request.jwt.claims setting. */
  readonly claims: string;
  /** PostgREST's notion: the role differs from the anonymous role (decides 401 vs 403). */
  readonly authenticated: boolean;
}

type Claims = Readonly<Record<string, unknown>>;

// Verified tokens are remembered so repeated calls skip the HMAC; time claims are still
// checked on every request.
const TOKEN_CACHE_LIMIT = 1000;

export class Authenticator {
  readonly #settings: AuthSettings;
  readonly #key: KeyObject | undefined;
  readonly #verified = new Map<string, { claims: Claims; identity: Identity | undefined }>();
  readonly #anonymous: Identity | undefined;

  constructor(settings: AuthSettings) {
    this.#settings = settings;
    this.#key =
      settings.jwtSecret === undefined ? undefined : createSecretKey(Buffer.from(settings.jwtSecret));
    this.#anonymous =
      settings.anonRole === undefined
        ? undefined
        : {
            role: settings.anonRole,
            claims: JSON.stringify({ role: settings.anonRole }),
            authenticated: false,
          };
  }

  /** Resolves to the request's identity, or rejects with PostgREST's PGRST30x error. */
  async authenticate(authorization: string | undefined): Promise<Identity> {
    const token = this.#bearerToken(authorization);
    if (token === undefined) {
      if (this.#anonymous === undefined) throw errors.anonymousDisabled();
      return this.#anonymous;
    }
    if (this.#key === undefined) throw errors.noJwtSecret();
    let verified = this.#verified.get(token);
    if (verified === undefined) {
      const claims = await this.#verify(token, this.#key);
      const role = typeof claims.role === 'string' ? claims.role : this.#settings.anonRole;
      const identity =
        role === undefined
          ? undefined
          : {
              role,
              claims: JSON.stringify({ ...claims, role }),
              authenticated: role !== this.#settings.anonRole,
            };
      verified = { claims, identity };
      if (this.#verified.size >= TOKEN_CACHE_LIMIT) this.#verified.clear();
      this.#verified.set(token, verified);
    }
    this.#checkTimeAndAudience(verified.claims);
    if (verified.identity === undefined) throw errors.anonymousDisabled();
    return verified.identity;
  }

  #bearerToken(authorization: string | undefined): string | undefined {
    if (authorization === undefined) return undefined;
    if (this.#settings.flavor === 'v14') {
      const match = /^bearer(?:\s+(.*))?$/i.exec(authorization);
      if (match === null) return undefined;
      const token = match[1] ?? '';
      if (token === '') throw this.#invalid('Empty JWT is sent in Authorization header');
      return token;
    }
    // 10.1.2 splits on single spaces and only knows these two spellings; "Bearer" with nothing
    // after it (HTTP trims a trailing space) is no token at all.
    const [scheme, token] = authorization.split(' ');
    if ((scheme !== 'Bearer' && scheme !== 'bearer') || token === undefined || token === '') return undefined;
    return token;
  }

  async #verify(token: string, key: KeyObject): Promise<Claims> {
    const v14 = this.#settings.flavor === 'v14';
    const parts = token.split('.');
    if (parts.length !== 3) {
      throw this.#invalid(
        v14
          ? `Expected 3 parts in JWT; got ${parts.length}`
          : `JWSError (CompactDecodeError Invalid number of parts: Expected 3 parts; got ${parts.length})`,
      );
    }
    const [headerPart = '', payloadPart = '', signaturePart = ''] = parts;
    const header = decodeJsonSegment(headerPart);
    if (
      decodeSegment(payloadPart) === undefined ||
      decodeSegment(signaturePart) === undefined ||
      !isObject(header)
    ) {
      throw this.#invalid(
        v14 ? 'JWT cryptographic operation failed' : 'JWSError (JSONDecodeError "Not valid base64url")',
      );
    }
    if (header.alg === 'none') {
      throw this.#invalid(v14 ? 'Wrong or unsupported encoding algorithm' : 'JWSError JWSNoSignatures');
    }
    let payload: Uint8Array;
    try {
      ({ payload } = await compactVerify(token, key, { algorithms: ['HS256'] }));
    } catch {
      throw v14
        ? errors.invalidToken(
            'PGRST301',
            'No suitable key or wrong key type',
            'None of the keys was able to decode the JWT',
          )
        : this.#invalid('JWSError JWSInvalidSignature');
    }
    const claims = parseJson(Buffer.from(payload).toString('utf8'));
    if (!isObject(claims)) {
      throw this.#invalid(
        v14 ? 'Parsing claims failed' : 'JWTClaimsSetDecodeError "Error in $: expected Object"',
      );
    }
    return claims;
  }

  #checkTimeAndAudience(claims: Claims): void {
    const v14 = this.#settings.flavor === 'v14';
    const skew = v14 ? 30 : 0;
    const now = Date.now() / 1000;
    const claimError = (v14Text: string, v10Text: string): ApiError =>
      v14 ? errors.invalidToken('PGRST303', v14Text) : this.#invalid(v10Text);
    for (const name of ['exp', 'nbf', 'iat'] as const) {
      const value = claims[name];
      if (value !== undefined && typeof value !== 'number') {
        throw claimError(
          `The JWT '${name}' claim must be a number`,
          `JWTClaimsSetDecodeError "Error in $['${name}']: expected NumericDate"`,
        );
      }
    }
    const { exp, nbf, iat } = claims;
    if (typeof exp === 'number' && now >= exp + skew) {
      throw v14 ? errors.invalidToken('PGRST303', 'JWT expired') : this.#invalid('JWT expired');
    }
    if (typeof nbf === 'number' && now + skew < nbf) throw claimError('JWT not yet valid', 'JWTNotYetValid');
    if (typeof iat === 'number' && iat > now + skew)
      throw claimError('JWT issued at future', 'JWTIssuedAtFuture');
    const audience = this.#settings.audience;
    if (audience !== undefined && claims.aud !== undefined) {
      const accepted = Array.isArray(claims.aud) ? claims.aud.includes(audience) : claims.aud === audience;
      if (!accepted) throw claimError('JWT not in audience', 'JWTNotInAudience');
    }
  }

  #invalid(message: string): ApiError {
    return errors.invalidToken('PGRST301', message);
  }
}

function isObject(value: unknown): value is Claims {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

/**
 * Strict base64url: only the alphabet, no padding, and no stray bits in the last character
 * (so "aaa" is rejected, as PostgREST 10.1.2 does).
 */
function decodeSegment(segment: string): Buffer | undefined {
  if (!/^[A-Za-z0-9_-]*$/.test(segment) || segment.length % 4 === 1) return undefined;
  const bytes = Buffer.from(segment, 'base64url');
  return bytes.toString('base64url') === segment ? bytes : undefined;
}

function decodeJsonSegment(segment: string): unknown {
  const bytes = decodeSegment(segment);
  return bytes === undefined ? undefined : parseJson(bytes.toString('utf8'));
}
