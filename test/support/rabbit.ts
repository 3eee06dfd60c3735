/**
 * Helpers for integration tests against a real RabbitMQ: the shared broker by default (`AMQP_URL`,
 * else amqp://guest:guest@127.0.0.1:5672) or a private node from `rabbit-node.ts`.
 *
 * Counts come from `rabbitmqctl list_queues`, which asks the queue processes directly. The
 * management API would be the obvious alternative, but its numbers are sampled every few seconds
 * and lag behind, which makes exact assertions flaky.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import type { ChannelModel, ConfirmChannel, GetMessage, Message, Options } from 'amqplib';
import amqp from 'amqplib';

export const DEFAULT_AMQP_URL = 'amqp://guest:guest@127.0.0.1:5672';

/** The broker that tests use unless they start a private node. */
export function amqpUrl(): string {
  return process.env.AMQP_URL ?? DEFAULT_AMQP_URL;
}

/** A name nobody else uses, so concurrent test files never share a queue. */
export function uniqueName(prefix: string): string {
  const safePrefix = prefix.replace(/[^A-Za-z0-9._-]/g, '_');
  return `${safePrefix}-${Date.now().toString(36)}-${randomBytes(4).toString('hex')}`;
}

function toError(value: unknown): Error {
  return value instanceof Error ? value : new Error(String(value));
}

// ---------------------------------------------------------------------------------------------
// waitFor

export interface WaitForOptions {
  readonly timeoutMs?: number;
  readonly intervalMs?: number;
  /** Says what was awaited; it leads the timeout error. */
  readonly message?: string | (() => string);
  /** Errors from the predicate that make further waiting pointless; they are rethrown at once. */
  readonly stopOn?: (error: Error) => boolean;
}

type Truthy<T> = Exclude<T, false | 0 | '' | null | undefined>;

/**
 * Polls until `predicate` returns a truthy value and returns that value. A throwing predicate
 * counts as "not yet" (the broker may be restarting) unless `stopOn` says otherwise, and the last
 * error becomes the `cause` of the timeout error.
 */
export async function waitFor<T>(
  predicate: () => T | Promise<T>,
  options: WaitForOptions = {},
): Promise<Truthy<T>> {
  const timeoutMs = options.timeoutMs ?? 10_000;
  const intervalMs = options.intervalMs ?? 50;
  const deadline = Date.now() + timeoutMs;
  let lastValue: unknown;
  let lastError: Error | undefined;
  for (;;) {
    try {
      const value = await predicate();
      if (value) return value as Truthy<T>;
      lastValue = value;
      lastError = undefined;
    } catch (error) {
      lastError = toError(error);
      if (options.stopOn?.(lastError)) throw lastError;
    }
    const remaining = deadline - Date.now();
    if (remaining <= 0) {
      const what = typeof options.message === 'function' ? options.message() : options.message;
      const last = lastError ? `last error: ${lastError.message}` : `last value: ${show(lastValue)}`;
      throw new Error(`${what ?? 'condition'} not met within ${timeoutMs} ms (${last})`, {
        cause: lastError,
      });
    }
    await new Promise((resolve) => setTimeout(resolve, Math.min(intervalMs, remaining)));
  }
}

function show(value: unknown): string {
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}

// ---------------------------------------------------------------------------------------------
// rabbitmqctl

export class RabbitmqctlError extends Error {
  readonly args: readonly string[];
  /** Process exit code; 69 means the node is not reachable (not started or not registered with epmd). */
  readonly exitCode: number | null;
  readonly signal: string | null;
  readonly stdout: string;
  readonly stderr: string;

  constructor(
    args: readonly string[],
    exitCode: number | null,
    signal: string | null,
    stdout: string,
    stderr: string,
  ) {
    const detail = (stderr.trim() || stdout.trim()).split('\n').slice(0, 8).join('\n');
    super(`rabbitmqctl ${args.join(' ')} failed (exit ${exitCode ?? signal}): ${detail}`);
    this.name = 'RabbitmqctlError';
    this.args = args;
    this.exitCode = exitCode;
    this.signal = signal;
    this.stdout = stdout;
    this.stderr = stderr;
  }
}

/** How the RabbitMQ scripts are run on this machine. */
export interface RabbitCli {
  /** Directory of `rabbitmqctl` / `rabbitmq-server`, or undefined to take them from PATH. */
  readonly scriptsDir: string | undefined;
  /** Set when the scripts must run as the `rabbitmq` user (the caller is root). */
  readonly user: { readonly uid: number; readonly gid: number; readonly home: string } | undefined;
}

const DEBIAN_SCRIPTS_DIR = '/usr/lib/rabbitmq/bin';
let cliPromise: Promise<RabbitCli> | undefined;

/**
 * As root, the Debian scripts behind the /usr/sbin wrappers are run directly as the `rabbitmq`
 * user. The wrappers would `su` to that user as well, but they also `cd /var/lib/rabbitmq` (so a
 * failed boot drops erl_crash.dump into the system broker's home) and re-quote every argument
 * through `sh -c`. HOME must be the rabbitmq user's home: that is where the Erlang cookie shared
 * by the CLI and every node started this way lives.
 */
export function rabbitCli(): Promise<RabbitCli> {
  cliPromise ??= resolveCli();
  return cliPromise;
}

async function resolveCli(): Promise<RabbitCli> {
  if (process.getuid?.() !== 0 || !existsSync(`${DEBIAN_SCRIPTS_DIR}/rabbitmqctl`)) {
    return { scriptsDir: undefined, user: undefined };
  }
  const entry = await run('getent', ['passwd', 'rabbitmq'], { timeoutMs: 10_000 });
  const fields = entry.stdout.trim().split(':');
  const uid = Number(fields[2]);
  const gid = Number(fields[3]);
  const home = fields[5];
  if (entry.exitCode !== 0 || !Number.isInteger(uid) || !Number.isInteger(gid) || !home) {
    return { scriptsDir: undefined, user: undefined };
  }
  return { scriptsDir: DEBIAN_SCRIPTS_DIR, user: { uid, gid, home } };
}

export interface RunOptions {
  readonly timeoutMs: number;
  readonly cwd?: string;
  readonly env?: NodeJS.ProcessEnv;
  readonly uid?: number;
  readonly gid?: number;
}

export interface RunResult {
  readonly exitCode: number | null;
  readonly signal: string | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs a command to completion; never rejects for a non-zero exit, only for a failed spawn. */
export function run(file: string, args: readonly string[], options: RunOptions): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    execFile(
      file,
      args,
      {
        timeout: options.timeoutMs,
        killSignal: 'SIGKILL',
        maxBuffer: 64 * 1024 * 1024,
        encoding: 'utf8',
        ...(options.cwd !== undefined && { cwd: options.cwd }),
        ...(options.env !== undefined && { env: options.env }),
        ...(options.uid !== undefined && { uid: options.uid }),
        ...(options.gid !== undefined && { gid: options.gid }),
      },
      (error, stdout, stderr) => {
        if (!error) {
          resolve({ exitCode: 0, signal: null, stdout, stderr });
          return;
        }
        const { code, signal } = error as NodeJS.ErrnoException & { signal?: NodeJS.Signals | null };
        if (typeof code === 'string') {
          reject(error);
          return;
        }
        resolve({ exitCode: typeof code === 'number' ? code : null, signal: signal ?? null, stdout, stderr });
      },
    );
  });
}

/** The command, environment and credentials for one of RabbitMQ's scripts. */
export async function rabbitCommand(
  script: 'rabbitmqctl' | 'rabbitmq-server',
  extraEnv: NodeJS.ProcessEnv = {},
): Promise<{ file: string; env: NodeJS.ProcessEnv; uid?: number; gid?: number }> {
  const cli = await rabbitCli();
  const env: NodeJS.ProcessEnv = { ...process.env, ...extraEnv };
  if (!cli.user || !cli.scriptsDir) return { file: script, env };
  return {
    file: `${cli.scriptsDir}/${script}`,
    env: { ...env, HOME: cli.user.home, USER: 'rabbitmq', LOGNAME: 'rabbitmq' },
    uid: cli.user.uid,
    gid: cli.user.gid,
  };
}

export interface RabbitmqctlOptions {
  /** Target node (`-n`); without it the CLI's default node, i.e. the system broker. */
  readonly node?: string;
  readonly timeoutMs?: number;
}

/** Runs `rabbitmqctl [-n node] ...args` and returns stdout; throws RabbitmqctlError on failure. */
export async function rabbitmqctl(
  args: readonly string[],
  options: RabbitmqctlOptions = {},
): Promise<string> {
  const fullArgs = options.node ? ['-n', options.node, ...args] : [...args];
  const command = await rabbitCommand('rabbitmqctl');
  const result = await run(command.file, fullArgs, {
    timeoutMs: options.timeoutMs ?? 60_000,
    cwd: tmpdir(),
    env: command.env,
    ...(command.uid !== undefined && { uid: command.uid }),
    ...(command.gid !== undefined && { gid: command.gid }),
  });
  if (result.exitCode !== 0) {
    throw new RabbitmqctlError(fullArgs, result.exitCode, result.signal, result.stdout, result.stderr);
  }
  return result.stdout;
}

// ---------------------------------------------------------------------------------------------
// Queue counts

export interface QueueCounts {
  readonly ready: number;
  readonly unacked: number;
  readonly consumers: number;
}

export interface QueueListOptions {
  /** A private node's name; omit for the shared broker. */
  readonly node?: string;
  readonly vhost?: string;
}

const COUNT = /^\d+$/;

/** Live counts for every queue in the vhost, keyed by queue name. */
export async function listQueues(options: QueueListOptions = {}): Promise<Map<string, QueueCounts>> {
  const stdout = await rabbitmqctl(
    [
      'list_queues',
      '-q',
      '--no-table-headers',
      ...(options.vhost !== undefined ? ['-p', options.vhost] : []),
      'name',
      'messages_ready',
      'messages_unacknowledged',
      'consumers',
    ],
    options.node !== undefined ? { node: options.node } : {},
  );
  return parseQueueList(stdout);
}

/**
 * Parses tab-separated `name ready unacked consumers` rows from the right, so a name containing
 * a tab still parses. Rows whose counts are not numbers (a header row, or a queue that could not
 * report them) are skipped rather than guessed at.
 */
export function parseQueueList(stdout: string): Map<string, QueueCounts> {
  const queues = new Map<string, QueueCounts>();
  for (const line of stdout.split('\n')) {
    const fields = line.replace(/\r$/, '').split('\t');
    if (fields.length < 4) continue;
    const [ready, unacked, consumers] = fields.slice(-3);
    if (!ready || !unacked || !consumers) continue;
    if (!COUNT.test(ready) || !COUNT.test(unacked) || !COUNT.test(consumers)) continue;
    queues.set(fields.slice(0, -3).join('\t'), {
      ready: Number(ready),
      unacked: Number(unacked),
      consumers: Number(consumers),
    });
  }
  return queues;
}

/** Live counts for one queue; throws if the queue does not exist. */
export async function queueCounts(queue: string, options: QueueListOptions = {}): Promise<QueueCounts> {
  const counts = (await listQueues(options)).get(queue);
  if (!counts) {
    throw new Error(`queue ${queue} not found on ${options.node ?? 'the shared broker'}`);
  }
  return counts;
}

// ---------------------------------------------------------------------------------------------
// TestBroker

export interface OutgoingMessage {
  readonly body: Buffer | string;
  readonly options?: Options.Publish;
}

export interface PublishOptions {
  /**
   * Ask the broker to return unroutable messages (default true), so a publish to a queue that does
   * not exist fails instead of being silently dropped by the default exchange.
   */
  readonly mandatory?: boolean;
}

export interface DrainOptions {
  /** Stop after this many messages even if the queue still has more. */
  readonly max?: number;
}

/**
 * One connection and one confirm channel to a broker. Both are reopened on the next call after the
 * server closed them (a 404 from a missing queue, a forced close, a broker restart), so one
 * disruption does not break the rest of a test. Only close() ends it for good.
 */
export class TestBroker {
  readonly url: string;
  #connection: ChannelModel | undefined;
  #current: ConfirmChannel | undefined;
  #channel: Promise<ConfirmChannel> | undefined;
  #closed = false;

  private constructor(url: string) {
    this.url = url;
  }

  static async connect(url: string = amqpUrl()): Promise<TestBroker> {
    const broker = new TestBroker(url);
    await broker.channel();
    return broker;
  }

  /** The current connection, if one is open. */
  get connection(): ChannelModel | undefined {
    return this.#connection;
  }

  /** The confirm channel, reopened (with its connection if need be) when the server closed it. */
  channel(): Promise<ConfirmChannel> {
    if (this.#closed) return Promise.reject(new Error(`TestBroker for ${this.url} is closed`));
    this.#channel ??= this.#open().catch((error: unknown) => {
      this.#channel = undefined;
      throw error;
    });
    return this.#channel;
  }

  async #open(): Promise<ConfirmChannel> {
    const connection = this.#connection ?? (await this.#connect());
    const channel = await connection.createConfirmChannel();
    channel.on('error', () => {});
    channel.on('close', () => {
      if (this.#current !== channel) return;
      this.#current = undefined;
      this.#channel = undefined;
    });
    this.#current = channel;
    return channel;
  }

  async #connect(): Promise<ChannelModel> {
    // Without noDelay every basic.get that follows an ack waits out Nagle plus the peer's delayed
    // ACK (~40 ms), which turns draining 10k messages into minutes.
    const connection = await amqp.connect(this.url, {
      noDelay: true,
      clientProperties: { connection_name: 'pgq-bridge-tests' },
    });
    // Without a listener an 'error' event (a forced close, a restart) would crash the test process.
    connection.on('error', () => {});
    connection.on('close', () => {
      if (this.#connection !== connection) return;
      this.#connection = undefined;
      this.#current = undefined;
      this.#channel = undefined;
    });
    if (this.#closed) {
      await connection.close().catch(() => {});
      throw new Error(`TestBroker for ${this.url} is closed`);
    }
    this.#connection = connection;
    return connection;
  }

  /**
   * Publishes to `queue` through the default exchange, waiting on 'drain' whenever the socket
   * buffer is full and then for every publisher confirm. Rejects on a nack, a closed channel, or
   * (with mandatory) any message the broker returned as unroutable.
   */
  async publish(
    queue: string,
    messages: readonly OutgoingMessage[],
    options: PublishOptions = {},
  ): Promise<void> {
    const channel = await this.channel();
    const mandatory = options.mandatory ?? true;
    let returned = 0;
    const onReturn = (message: Message): void => {
      if (message.fields.routingKey === queue) returned += 1;
    };
    channel.on('return', onReturn);
    try {
      for (const message of messages) {
        const body = typeof message.body === 'string' ? Buffer.from(message.body, 'utf8') : message.body;
        const accepted = channel.publish('', queue, body, { mandatory, ...message.options });
        if (!accepted) await drained(channel);
      }
      await channel.waitForConfirms();
    } finally {
      channel.off('return', onReturn);
    }
    if (returned > 0) {
      throw new Error(`${returned} of ${messages.length} message(s) to ${queue} were unroutable`);
    }
  }

  /**
   * Takes every message that is ready in `queue` right now with basic.get, acking each, and returns
   * them in queue order. Messages held unacked by consumers are not included.
   */
  async drainQueue(queue: string, options: DrainOptions = {}): Promise<GetMessage[]> {
    const max = options.max ?? Number.POSITIVE_INFINITY;
    const channel = await this.channel();
    const messages: GetMessage[] = [];
    while (messages.length < max) {
      const message = await channel.get(queue, { noAck: false });
      if (message === false) break;
      channel.ack(message);
      messages.push(message);
    }
    return messages;
  }

  /** Deletes queues; a queue that does not exist is not an error. */
  async deleteQueues(...names: readonly string[]): Promise<void> {
    for (const name of names) {
      try {
        const channel = await this.channel();
        await channel.deleteQueue(name);
      } catch (error) {
        if (!isNotFound(error)) throw error;
      }
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
    const connection = this.#connection;
    this.#connection = undefined;
    this.#current = undefined;
    this.#channel = undefined;
    try {
      await connection?.close();
    } catch {
      // Already closed by the broker; nothing left to release.
    }
  }
}

function isNotFound(error: unknown): boolean {
  return (error as { code?: unknown } | null)?.code === 404;
}

function drained(channel: ConfirmChannel): Promise<void> {
  return new Promise((resolve, reject) => {
    const onDrain = (): void => {
      channel.off('close', onClose);
      resolve();
    };
    const onClose = (): void => {
      channel.off('drain', onDrain);
      reject(new Error('channel closed while waiting for drain'));
    };
    channel.once('drain', onDrain);
    channel.once('close', onClose);
  });
}

/** Connects, runs `fn` with the broker, and always closes the connection. */
export async function withBroker<T>(url: string, fn: (broker: TestBroker) => Promise<T>): Promise<T> {
  const broker = await TestBroker.connect(url);
  try {
    return await fn(broker);
  } finally {
    await broker.close();
  }
}

type Target = string | TestBroker;

function using<T>(target: Target, fn: (broker: TestBroker) => Promise<T>): Promise<T> {
  return typeof target === 'string' ? withBroker(target, fn) : fn(target);
}

/** See TestBroker.publish; a URL opens a connection just for this call. */
export function publish(
  target: Target,
  queue: string,
  messages: readonly OutgoingMessage[],
  options: PublishOptions = {},
): Promise<void> {
  return using(target, (broker) => broker.publish(queue, messages, options));
}

/** See TestBroker.drainQueue; reads from the shared broker unless `from` says otherwise. */
export function drainQueue(
  queue: string,
  options: DrainOptions & { readonly from?: Target } = {},
): Promise<GetMessage[]> {
  return using(options.from ?? amqpUrl(), (broker) => broker.drainQueue(queue, options));
}

/** Deletes queues on the shared broker, ignoring ones that do not exist. */
export function deleteQueues(...names: readonly string[]): Promise<void> {
  if (names.length === 0) return Promise.resolve();
  return withBroker(amqpUrl(), (broker) => broker.deleteQueues(...names));
}

/** Declares a durable queue with `args` on its own connection (a queue a test pre-declares). */
export function declareQueue(url: string, name: string, args: Record<string, unknown>): Promise<void> {
  return withBroker(url, async (broker) => {
    const channel = await broker.channel();
    await channel.assertQueue(name, { durable: true, arguments: args });
  });
}
