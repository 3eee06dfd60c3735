import { maskUrlPassword } from '../config/mask.ts';
import { errorCode, toError } from '../errors.ts';

/**
 * What a broker failure means for the operator. A configuration fault (a refused login, a
 * virtual host that is not there, a queue declared with other arguments) does not go away by
 * waiting: at start it ends the process naming the key to fix; later it is retried like
 * weather (a broker restarting, a network cut), but reported as what it is.
 */
export type BrokerFaultKind =
  | 'login_refused'
  | 'vhost_refused'
  | 'precondition_failed'
  | 'queue_missing'
  | 'access_refused'
  | 'unavailable';

export interface BrokerFault {
  readonly kind: BrokerFaultKind;
  readonly config: boolean;
  /** The config key whose value has to change (config faults). */
  readonly key: string | undefined;
  /** One line, no stack: what happened and, for config faults, what to change. */
  readonly message: string;
  /** The socket or TLS error code, when there is one (ECONNREFUSED, SELF_SIGNED_CERT_IN_CHAIN, ...). */
  readonly errno?: string | undefined;
}

/** AMQP reply codes on a channel (amqplib puts them in `code`). */
const PRECONDITION_FAILED = 406;
const NOT_FOUND = 404;
const ACCESS_REFUSED = 403;

/**
 * amqplib reports a refused handshake only as text: the login step's connection.close carries
 * its reply code in a fixed prefix, and a refused connection.open (the virtual host step)
 * shows as an unexpected ConnectionClose. These two prefixes are amqplib's own wording, not
 * the broker's, so they are read here and nowhere else.
 */
const LOGIN_REFUSED = /^Handshake terminated by server: (\d{3})/;
const OPEN_REFUSED = /^Expected ConnectionOpenOk; got <ConnectionClose/;

export function connectFault(error: unknown, url: string): BrokerFault {
  const err = toError(error);
  const parsed = safeUrl(url);
  const login = LOGIN_REFUSED.exec(err.message);
  if (login?.[1] === String(ACCESS_REFUSED)) {
    return {
      kind: 'login_refused',
      config: true,
      key: 'amqp.url',
      message: `the broker refused the login of user ${JSON.stringify(parsed.user)}: fix the user or password in amqp.url (PGQ_BRIDGE_AMQP_URL)`,
    };
  }
  if (OPEN_REFUSED.test(err.message)) {
    return {
      kind: 'vhost_refused',
      config: true,
      key: 'amqp.url',
      message: `the broker refused virtual host ${JSON.stringify(parsed.vhost)} (it does not exist, or user ${JSON.stringify(parsed.user)} has no access to it): fix the path of amqp.url (PGQ_BRIDGE_AMQP_URL) or create the vhost and grant the user`,
    };
  }
  const code = errorCode(err);
  return {
    kind: 'unavailable',
    config: false,
    key: undefined,
    errno: code,
    message: `cannot connect to the broker at ${maskUrlPassword(url)}: ${code === undefined ? '' : `${code} `}${err.message}`,
  };
}

/** A declare or check of `queue` failed; `argumentsKey` names its arguments in the config. */
export function declareFault(
  error: unknown,
  queue: string,
  keys: { readonly arguments: string; readonly queue: string },
): BrokerFault {
  const err = toError(error);
  const code = (error as { code?: unknown } | null)?.code;
  if (code === PRECONDITION_FAILED) {
    return {
      kind: 'precondition_failed',
      config: true,
      key: keys.arguments,
      message: `queue ${JSON.stringify(queue)} exists with other arguments (406 PRECONDITION_FAILED): set ${keys.arguments} to match it, or delete the queue`,
    };
  }
  if (code === NOT_FOUND) {
    return {
      kind: 'queue_missing',
      config: true,
      key: keys.queue,
      message: `queue ${JSON.stringify(queue)} does not exist (404 NOT_FOUND) and is not declared by the bridge: create it, fix ${keys.queue}, or set declare: true`,
    };
  }
  if (code === ACCESS_REFUSED) {
    return {
      kind: 'access_refused',
      config: true,
      key: 'amqp.url',
      message: `the broker user may not use queue ${JSON.stringify(queue)} (403 ACCESS_REFUSED): grant it configure, write and read on it, or use another user in amqp.url`,
    };
  }
  return {
    kind: 'unavailable',
    config: false,
    key: undefined,
    message: `cannot declare queue ${JSON.stringify(queue)}: ${err.message}`,
  };
}

function safeUrl(url: string): { user: string; vhost: string } {
  try {
    const parsed = new URL(url);
    const path = decodeURIComponent(parsed.pathname.slice(1));
    return { user: decodeURIComponent(parsed.username) || 'guest', vhost: path === '' ? '/' : path };
  } catch {
    return { user: '?', vhost: '?' };
  }
}
