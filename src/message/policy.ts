import type { Config } from '../config/config.ts';
import type { EnqueueArgs } from './args.ts';
import { InvalidMessageError } from './invalid.ts';

/**
 * The operator's limits on what may be enqueued, checked after decoding and before the RPC.
 * A violation is final for the message, so it is dead-lettered with its own reason. (The same
 * limits can be enforced in the database too: sql/install-hardened.sql.)
 */

export interface Policy {
  /** Undefined when the check fails for a reason; otherwise the message may go on. */
  check(args: EnqueueArgs): InvalidMessageError | undefined;
}

/** `*` matches any run of characters; everything else is literal. */
export function entrypointMatcher(patterns: readonly string[]): (entrypoint: string) => boolean {
  const exact = new Set(patterns.filter((p) => !p.includes('*')));
  const wildcards = patterns
    .filter((p) => p.includes('*'))
    .map((p) => new RegExp(`^${p.split('*').map(escapeRegExp).join('.*')}$`, 's'));
  return (entrypoint) => exact.has(entrypoint) || wildcards.some((re) => re.test(entrypoint));
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

export function createPolicy(policy: Config['policy']): Policy {
  const allowed = policy.entrypoints === undefined ? undefined : entrypointMatcher(policy.entrypoints);
  return {
    check(args) {
      if (allowed !== undefined && !allowed(args.entrypoint)) {
        return new InvalidMessageError(
          'entrypoint_not_allowed',
          `entrypoint ${JSON.stringify(args.entrypoint)} is not in policy.entrypoints`,
        );
      }
      const payloadBytes = args.payload?.length ?? 0;
      if (payloadBytes > policy.maxPayloadBytes) {
        return new InvalidMessageError(
          'payload_too_large',
          `payload is ${payloadBytes} bytes; policy.maxPayloadBytes is ${policy.maxPayloadBytes}`,
        );
      }
      const headersBytes = args.headersJson === undefined ? 0 : Buffer.byteLength(args.headersJson, 'utf8');
      if (headersBytes > policy.maxHeadersBytes) {
        return new InvalidMessageError(
          'headers_too_large',
          `headers are ${headersBytes} bytes of JSON; policy.maxHeadersBytes is ${policy.maxHeadersBytes}`,
        );
      }
      return undefined;
    },
  };
}
