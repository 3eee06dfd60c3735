/**
 * Every failure the bridge reasons about carries a machine-readable `kind`; decisions branch on
 * the kind (and on HTTP status / PostgREST code / errno), never on message text.
 *
 * - `invalid_message`: the delivery can never become a job (bad JSON, wrong field type, ...).
 * - `rejected_by_rpc`: PostgREST/PostgreSQL refused the arguments (4xx data errors, P0001, ...).
 * - `transient`: the call may succeed later (network, 503, 504, timeouts, serialization failures).
 * - `endpoint_fault`: the endpoint or our configuration is wrong (404 PGRST202, 401/403); never the
 *   message's fault, so never dead-lettered.
 * - `config`: the bridge's own configuration is invalid.
 */
export type ErrorKind = 'invalid_message' | 'rejected_by_rpc' | 'transient' | 'endpoint_fault' | 'config';

export class BridgeError extends Error {
  readonly kind: ErrorKind;

  constructor(kind: ErrorKind, message: string, options?: ErrorOptions) {
    super(message, options);
    this.kind = kind;
    this.name = 'BridgeError';
  }
}

export class ConfigError extends BridgeError {
  /** One line per problem, each naming the key. */
  readonly problems: readonly string[];

  constructor(problems: readonly string[]) {
    super('config', `invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.problems = problems;
    this.name = 'ConfigError';
  }
}

/** Normalises anything thrown into an Error so logs and rethrows have a stack and a message. */
export function toError(thrown: unknown): Error {
  if (thrown instanceof Error) return thrown;
  if (typeof thrown === 'string') return new Error(thrown);
  try {
    return new Error(`non-error thrown: ${JSON.stringify(thrown)}`);
  } catch {
    return new Error(`non-error thrown: ${String(thrown)}`);
  }
}

/** The errno-style code of a Node system error (ECONNREFUSED, ...), if any. */
export function errorCode(error: unknown): string | undefined {
  if (typeof error === 'object' && error !== null && 'code' in error) {
    const code = (error as { code: unknown }).code;
    if (typeof code === 'string') return code;
  }
  return undefined;
}
