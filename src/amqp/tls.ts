import type { Config } from '../config/config.ts';
import { readConfiguredFile } from '../config/files.ts';

/** amqplib socket options for `amqp.tls`, with the PEM files read (once, at start). */
export function amqpSocketOptions(tls: Config['amqp']['tls']): Record<string, unknown> {
  if (tls === undefined) return {};
  const options: Record<string, unknown> = {};
  const ca = readConfiguredFile(tls.caFile, 'amqp.tls.caFile');
  const cert = readConfiguredFile(tls.certFile, 'amqp.tls.certFile');
  const key = readConfiguredFile(tls.keyFile, 'amqp.tls.keyFile');
  if (ca !== undefined) options.ca = [ca];
  if (cert !== undefined) options.cert = cert;
  if (key !== undefined) options.key = key;
  if (tls.passphrase !== undefined) options.passphrase = tls.passphrase;
  if (tls.servername !== undefined) options.servername = tls.servername;
  return options;
}
