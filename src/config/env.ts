/**
 * Environment variables for endpoints and secrets, so a container can keep secrets out of the
 * mounted file. Each overrides one key of the parsed file before it is validated.
 */

export const CONFIG_PATH_ENV = 'PGQ_BRIDGE_CONFIG';

export type Env = Readonly<Record<string, string | undefined>>;

/** Environment variables that override one key each; the value is a JSON-compatible string. */
export const ENV_OVERRIDES = {
  PGQ_BRIDGE_AMQP_URL: ['amqp', 'url'],
  PGQ_BRIDGE_AMQP_URLS: ['amqp', 'urls'],
  PGQ_BRIDGE_AMQP_TLS_PASSPHRASE: ['amqp', 'tls', 'passphrase'],
  PGQ_BRIDGE_POSTGREST_URL: ['postgrest', 'url'],
  PGQ_BRIDGE_POSTGREST_TOKEN: ['postgrest', 'bearerToken'],
  PGQ_BRIDGE_JWT_SECRET: ['postgrest', 'jwt', 'secret'],
  PGQ_BRIDGE_LOG_LEVEL: ['log', 'level'],
  PGQ_BRIDGE_HTTP_PORT: ['http', 'port'],
} as const satisfies Record<string, readonly string[]>;

/** A broker URL from the environment replaces the file's, whichever of the two keys each uses. */
const REPLACES: Readonly<Record<string, string>> = { url: 'urls', urls: 'url' };

/** The value a variable sets: a port as a number, a URL list as an array. */
function envValue(key: string, value: string): unknown {
  // A port that is not plain digits stays a string, so the schema names the variable and refuses it.
  if (key === 'port') return /^\d+$/.test(value) ? Number(value) : value;
  // Split only where the next URL starts: a multi-host URL has commas of its own.
  if (key === 'urls') return value.trim().split(/[\s,]+(?=amqps?:\/\/)/i);
  return value;
}

/**
 * The raw config with the environment's overrides applied (a copy), and which variable set each
 * key, so a problem with it names the variable.
 */
export function applyEnv(
  raw: Readonly<Record<string, unknown>>,
  env: Env,
): { readonly merged: Record<string, unknown>; readonly envByPath: ReadonlyMap<string, string> } {
  const merged: Record<string, unknown> = structuredClone(raw);
  const envByPath = new Map<string, string>();
  for (const [name, path] of Object.entries(ENV_OVERRIDES)) {
    const value = env[name];
    if (value === undefined || value === '') continue;
    let target = merged;
    for (const key of path.slice(0, -1)) {
      const child = target[key];
      const object =
        typeof child === 'object' && child !== null && !Array.isArray(child)
          ? (child as Record<string, unknown>)
          : {};
      target[key] = object;
      target = object;
    }
    const key = path[path.length - 1] as string;
    target[key] = envValue(key, value);
    envByPath.set(path.join('.'), name);
    const replaced = REPLACES[key];
    if (replaced !== undefined && !envByPath.has([...path.slice(0, -1), replaced].join('.'))) {
      delete target[replaced];
    }
  }
  return { merged, envByPath };
}
