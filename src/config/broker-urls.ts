/**
 * A RabbitMQ cluster can be given as one URL naming several hosts
 * (`amqp://user:pass@rabbit-0:5672,rabbit-1:5672,rabbit-2/vhost`), the form other AMQP clients
 * accept too. It is expanded into one URL per node with the same credentials, vhost and query.
 */

const MULTI_HOST = /^(amqps?:\/\/)([^/?#]*@)?([^/?#]*)(.*)$/i;

/** One URL per host of a (possibly multi-host) broker URL. */
export function expandHosts(url: string): string[] {
  const match = MULTI_HOST.exec(url);
  if (match === null) return [url];
  const [, scheme = '', userinfo = '', hosts = '', rest = ''] = match;
  const names = hosts.split(',');
  if (names.length === 1) return [url];
  return names.map((host) => `${scheme}${userinfo}${host}${rest}`);
}
