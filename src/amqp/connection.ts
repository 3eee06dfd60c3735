import type { ChannelModel } from 'amqplib';
import amqp from 'amqplib';
import type { Logger } from 'pino';
import { maskUrlPassword } from '../config/mask.ts';
import { toError } from '../errors.ts';
import { backoffDelay } from '../resilience/backoff.ts';
import { within } from '../resilience/deadline.ts';
import { sleep } from '../resilience/sleep.ts';
import { type BrokerFault, connectFault } from './faults.ts';
import { type BrokerNode, brokerNodes, type NodeMove, NodeRotation } from './nodes.ts';

/**
 * One AMQP connection that comes back by itself. After every (re)connect it runs `setup`, which
 * opens channels and declares topology; when the connection is lost it calls `onLost` so the
 * owner can mark everything that belonged to it dead, then reconnects with exponential backoff
 * and full jitter (many replicas restarting together must not reconnect in lockstep).
 *
 * With several broker nodes, a failed connect or a lost connection moves on to the next node
 * (see nodes.ts); the backoff grows only once every node has been tried, so a cluster with one
 * node down is left within one short delay.
 *
 * States: CONNECTING → CONNECTED → (lost) → CONNECTING … → CLOSED (after close()).
 *
 * Every attempt has a deadline (`connectTimeoutMs`): amqplib's socket `timeout` covers the
 * handshake (a broker that accepts TCP and never answers), and setup is raced against it, the
 * socket destroyed when it loses. close() waits as long for the broker's close-ok, then
 * destroys the socket: a frozen broker cannot hold shutdown. Failures are logged once per
 * change of what went wrong, without a stack per attempt.
 */

export interface ConnectionSettings {
  /** Broker URLs (multi-host ones included); several name the nodes of one cluster. */
  readonly urls: readonly string[];
  /** Where in the node list this replica starts (see nodes.ts startIndex). */
  readonly startAt: number;
  readonly heartbeatSeconds: number;
  readonly connectionName: string;
  readonly reconnectInitialDelayMs: number;
  readonly reconnectMaxDelayMs: number;
  readonly connectTimeoutMs: number;
  readonly socketOptions?: Readonly<Record<string, unknown>>;
}

export interface ConnectionHooks {
  /** Runs on every new connection; a throw counts as a failed connect and is retried. */
  readonly setup: (connection: ChannelModel) => Promise<void>;
  readonly onLost: (error: Error | undefined) => void;
  /** Called after each successful reconnect (not the first connect). */
  readonly onReconnected?: () => void;
  /** Called on every move to another node, before connecting to it. */
  readonly onFailover?: (move: NodeMove) => void;
  /** What went wrong with the last attempt; undefined once connected. */
  readonly onFault?: (fault: BrokerFault | undefined) => void;
}

export type ConnectFn = (url: string, socketOptions: Record<string, unknown>) => Promise<ChannelModel>;

export class ConnectionKeeper {
  readonly #settings: ConnectionSettings;
  readonly #hooks: ConnectionHooks;
  readonly #logger: Logger;
  readonly #connect: ConnectFn;
  readonly #nodes: NodeRotation;
  #connection: ChannelModel | undefined;
  #closed = false;
  #stopWaiting = new AbortController();
  #loop: Promise<void> | undefined;
  #waiters: Array<() => void> = [];
  #lastFault: BrokerFault | undefined;

  constructor(
    settings: ConnectionSettings,
    hooks: ConnectionHooks,
    logger: Logger,
    connect: ConnectFn = amqp.connect,
  ) {
    this.#settings = settings;
    this.#hooks = hooks;
    this.#logger = logger.child({ connection: settings.connectionName });
    this.#connect = connect;
    this.#nodes = new NodeRotation(brokerNodes(settings.urls), settings.startAt);
  }

  get connected(): boolean {
    return this.#connection !== undefined;
  }

  /** The node connected to right now. */
  get node(): BrokerNode | undefined {
    return this.#connection === undefined ? undefined : this.#nodes.current;
  }

  get current(): ChannelModel | undefined {
    return this.#connection;
  }

  start(): void {
    this.#loop ??= this.#run();
  }

  /** Resolves once connected (and set up), or when closed. */
  async waitUntilConnected(): Promise<void> {
    if (this.#connection !== undefined || this.#closed) return;
    await new Promise<void>((resolve) => this.#waiters.push(resolve));
  }

  /** Closes within `timeoutMs` (default: the connect deadline); past it the socket is destroyed. */
  async close(timeoutMs: number = this.#settings.connectTimeoutMs): Promise<void> {
    const started = Date.now();
    if (!this.#closed) {
      this.#closed = true;
      this.#stopWaiting.abort();
      const connection = this.#connection;
      this.#connection = undefined;
      if (connection !== undefined) await this.#closeConnection(connection, timeoutMs);
      this.#wakeWaiters();
    }
    await within(this.#loop ?? Promise.resolve(), timeoutMs - (Date.now() - started));
  }

  async #closeConnection(connection: ChannelModel, timeoutMs: number): Promise<void> {
    const closing = connection.close().catch((error: unknown) => {
      this.#logger.debug({ err: toError(error) }, 'closing the connection failed (already closed)');
    });
    if (!(await within(closing, timeoutMs))) {
      this.#logger.warn({ timeoutMs }, 'the broker did not confirm the close in time; socket destroyed');
      destroySocket(connection);
    }
  }

  async #run(): Promise<void> {
    let failures = 0;
    let everConnected = false;
    while (!this.#closed) {
      const connected = await this.#connectOnce();
      if (connected !== undefined) {
        if (everConnected) this.#hooks.onReconnected?.();
        everConnected = true;
        failures = 0;
        const error = await connected.lost;
        if (this.#closed) break;
        this.#logger.warn(
          { err: error, node: this.#nodes.current.address },
          'broker connection lost; reconnecting',
        );
        this.#moveOn('connection_lost');
      } else {
        failures++;
        this.#moveOn('connect_failed');
      }
      if (this.#closed) break;
      // Counted in rounds of the node list: every node gets a try before the backoff grows.
      const delay = backoffDelay(Math.floor(Math.max(failures - 1, 0) / this.#nodes.size), {
        initialDelayMs: this.#settings.reconnectInitialDelayMs,
        maxDelayMs: this.#settings.reconnectMaxDelayMs,
      });
      await sleep(delay, this.#stopWaiting.signal);
    }
  }

  /**
   * Connects and runs setup; returns the loss to wait for, or undefined if it failed. (Wrapped in
   * an object: an async function returning a promise would wait for it, i.e. for the loss.)
   */
  async #connectOnce(): Promise<{ readonly lost: Promise<Error | undefined> } | undefined> {
    const { connectTimeoutMs } = this.#settings;
    const node = this.#nodes.current;
    let connection: ChannelModel | undefined;
    try {
      const connecting = this.#connect(this.#urlWithHeartbeat(node.url), {
        // Acks are tiny frames: with Nagle's algorithm each can wait ~40 ms for company.
        noDelay: true,
        // amqplib ends the attempt when the socket is silent this long before the handshake ends.
        timeout: connectTimeoutMs,
        ...this.#settings.socketOptions,
        clientProperties: { connection_name: this.#settings.connectionName },
      });
      // close() must not wait for an attempt in flight; one that still succeeds is closed.
      const stopped = new Promise<undefined>((resolve) =>
        this.#stopWaiting.signal.addEventListener('abort', () => resolve(undefined), { once: true }),
      );
      connection = await Promise.race([connecting, stopped]);
      if (connection === undefined) {
        connecting.then((late) => late.close()).catch(() => undefined);
        return undefined;
      }
    } catch (error) {
      this.#report(connectFault(error, node.url));
      return undefined;
    }
    const opened = connection;
    let lastError: Error | undefined;
    const lost = new Promise<Error | undefined>((resolve) => {
      // Without an 'error' listener a network error or missed heartbeat would crash the process.
      opened.on('error', (error: Error) => {
        lastError = error;
      });
      opened.on('close', (error?: Error) => {
        if (this.#connection === opened) this.#connection = undefined;
        this.#hooks.onLost(error ?? lastError);
        resolve(error ?? lastError);
      });
    });
    opened.on('blocked', (reason: string) => this.#logger.warn({ reason }, 'broker blocked this connection'));
    opened.on('unblocked', () => this.#logger.info('broker unblocked this connection'));
    let setupError: unknown;
    const setup = this.#hooks.setup(opened).catch((error: unknown) => {
      setupError = error ?? new Error('setup failed');
    });
    if (!(await within(setup, connectTimeoutMs))) {
      setupError = new Error(`setting up the connection took longer than ${connectTimeoutMs} ms`);
      destroySocket(opened);
    }
    if (setupError !== undefined) {
      this.#report({
        kind: 'unavailable',
        config: false,
        key: undefined,
        message: `setting up the broker connection failed: ${toError(setupError).message}`,
      });
      await this.#closeConnection(opened, connectTimeoutMs);
      await within(lost, connectTimeoutMs);
      return undefined;
    }
    if (this.#closed) {
      await this.#closeConnection(opened, connectTimeoutMs);
      return undefined;
    }
    this.#connection = opened;
    this.#lastFault = undefined;
    this.#hooks.onFault?.(undefined);
    this.#logger.info({ url: maskUrlPassword(node.url), node: node.address }, 'connected to the broker');
    this.#wakeWaiters();
    return { lost };
  }

  /** One log line per change of what goes wrong; the same failure again is only debug. */
  #report(fault: BrokerFault): void {
    const repeated = this.#lastFault?.message === fault.message;
    this.#lastFault = fault;
    this.#hooks.onFault?.(fault);
    const fields = {
      key: fault.key,
      errno: fault.errno,
      reason: fault.message,
      node: this.#nodes.current.address,
    };
    if (repeated) this.#logger.debug(fields, 'still cannot connect to the broker; retrying');
    else if (fault.config)
      this.#logger.error(fields, 'the broker refuses the configuration; retrying with backoff');
    else this.#logger.warn(fields, 'cannot connect to the broker; retrying with backoff');
  }

  /** After a failure, the next node gets the next attempt. */
  #moveOn(reason: 'connection_lost' | 'connect_failed'): void {
    const move = this.#nodes.advance();
    if (move === undefined) return;
    this.#logger.warn(
      { from: move.from.address, to: move.to.address, reason },
      'moving to another broker node',
    );
    this.#hooks.onFailover?.(move);
  }

  #urlWithHeartbeat(nodeUrl: string): string {
    const url = new URL(nodeUrl);
    if (!url.searchParams.has('heartbeat'))
      url.searchParams.set('heartbeat', String(this.#settings.heartbeatSeconds));
    return url.toString();
  }

  #wakeWaiters(): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const wake of waiters) wake();
  }
}

/** Drops the TCP/TLS socket under an amqplib connection; its 'close' follows. */
function destroySocket(connection: ChannelModel): void {
  const stream = (connection as unknown as { connection?: { stream?: { destroy(): void } } }).connection
    ?.stream;
  stream?.destroy();
}
