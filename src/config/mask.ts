import type { Config } from './config.ts';

/** Secrets replaced by `***`, for printing and logging a config or a URL. */

/** The config with secrets replaced, for printing and logging. */
export function maskSecrets(config: Config): unknown {
  const { amqp, postgrest } = config;
  return {
    ...config,
    amqp: {
      ...amqp,
      ...(amqp.url === undefined ? {} : { url: maskUrlPassword(amqp.url) }),
      ...(amqp.urls === undefined ? {} : { urls: amqp.urls.map(maskUrlPassword) }),
      nodes: amqp.nodes.map(maskUrlPassword),
      ...(amqp.tls?.passphrase === undefined ? {} : { tls: { ...amqp.tls, passphrase: '***' } }),
    },
    postgrest: {
      ...postgrest,
      url: maskUrlPassword(postgrest.url),
      ...(postgrest.bearerToken === undefined ? {} : { bearerToken: '***' }),
      ...(postgrest.jwt === undefined ? {} : { jwt: { ...postgrest.jwt, secret: '***' } }),
    },
  };
}

export function maskUrlPassword(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password === '') return url;
    parsed.password = '***';
    return parsed.toString().replace('%2A%2A%2A', '***');
  } catch {
    return url.replace(/\/\/.*@/, '//***@');
  }
}
