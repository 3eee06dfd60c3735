/**
 * A private RabbitMQ node for tests that disrupt the broker (forced closes, restarts, consumer
 * timeouts), so the shared broker on 5672 that other test files use stays up.
 *
 * Each node gets its own name, AMQP and distribution ports (with `tls`, an AMQPS port too), and a
 * temp directory (config, mnesia, logs, pid file, TLS files) owned by the `rabbitmq` user, whose
 * Erlang cookie the node and the CLI share.
 * No plugins are enabled, which keeps the boot as short as RabbitMQ allows.
 *
 * Always call `stop()` in an `after` hook. If the test process dies first, a small watchdog
 * process stops the node and removes its directory within a couple of seconds; a normal exit
 * without `stop()` kills the node from the 'exit' handler. Signal handlers are deliberately not
 * installed: a SIGINT/SIGTERM listener would stop Node from exiting on that signal, and the
 * watchdog already covers every way the process can die, SIGKILL included.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, rmSync } from 'node:fs';
import { chmod, chown, copyFile, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import amqp from 'amqplib';
import {
  listQueues,
  type QueueCounts,
  RabbitmqctlError,
  rabbitCli,
  rabbitCommand,
  rabbitmqctl,
  run,
  waitFor,
} from './rabbit.ts';

export interface PrivateNodeOptions {
  /** AMQP port; a free one is picked when omitted. */
  readonly amqpPort?: number;
  /** Erlang distribution port; a free one is picked when omitted. */
  readonly distPort?: number;
  /** `consumer_timeout` in ms. RabbitMQ only checks it on the channel tick, so pair it with channelTickMs. */
  readonly consumerTimeoutMs?: number;
  /** `channel_tick_interval` in ms (RabbitMQ's default is 60000). */
  readonly channelTickMs?: number;
  /** Upper bound for the whole boot; default 90 s (a boot takes ~6 s on an idle 2-core machine). */
  readonly startTimeoutMs?: number;
  /** Adds an AMQPS listener on 127.0.0.1 beside the plain one. */
  readonly tls?: PrivateNodeTlsOptions;
}

export interface PrivateNodeTlsOptions {
  /** PEM CA that client certificates are verified against. */
  readonly caFile: string;
  /** PEM server certificate; it must name `localhost` for `tlsUrl` to verify. */
  readonly certFile: string;
  /** PEM key of the server certificate, unencrypted. */
  readonly keyFile: string;
  /** `ssl_options.verify = verify_peer`: ask clients for a certificate and check it. Default true. */
  readonly verifyPeer?: boolean;
  /** `ssl_options.fail_if_no_peer_cert = true`: refuse clients without one. Default false. */
  readonly failIfNoPeerCert?: boolean;
  /** AMQPS port; a free one is picked when omitted. */
  readonly port?: number;
}

export interface PrivateNode {
  /** amqp://guest:guest@127.0.0.1:<amqpPort> */
  readonly url: string;
  /** e.g. pgqb-mwv0k3-1a2b3c4d@localhost */
  readonly nodeName: string;
  readonly amqpPort: number;
  readonly distPort: number;
  /** amqps://guest:guest@localhost:<tlsPort> when started with `tls`. */
  readonly tlsUrl: string | undefined;
  readonly tlsPort: number | undefined;
  /** Temp directory with config, mnesia, logs and pid file; removed by stop(). */
  readonly dir: string;
  /** Wall time from launching the server to a successful AMQP connection. */
  readonly startupMs: number;
  /** OS pid of the node's Erlang VM. */
  readonly pid: number;
  /** Stops the node, waits until its process is gone and its port closed, and removes `dir`. Idempotent. */
  stop(): Promise<void>;
  /** `rabbitmqctl stop_app`: the broker goes down but the node (and its data) stays. */
  stopApp(): Promise<void>;
  /** `rabbitmqctl start_app`, then waits until the AMQP port accepts connections again. */
  startApp(): Promise<void>;
  /** `rabbitmqctl close_all_connections`: clients see 320 CONNECTION_FORCED with `reason`. */
  closeAllConnections(reason: string): Promise<void>;
  /** Live counts for every queue on this node. */
  listQueues(): Promise<Map<string, QueueCounts>>;
  /** `rabbitmqctl -n <nodeName> ...args`, returning stdout. */
  rabbitmqctl(args: readonly string[]): Promise<string>;
}

const DEFAULT_START_TIMEOUT_MS = 90_000;
const STOP_TIMEOUT_MS = 30_000;
/** The pid file shows up ~3 s after launch when idle and ~10 s with four nodes booting on two cores. */
const NO_PID_FILE_MS = 45_000;
const WATCHDOG_INTERVAL_S = 1;

/** Ports other RabbitMQ processes on this host listen on or take for themselves. */
const RESERVED_PORTS = new Set<number>([
  4369, // epmd
  5671,
  5672,
  15672,
  25672,
  // rabbitmqctl's own distribution listener takes one of these per running CLI call.
  ...Array.from({ length: 11 }, (_, i) => 35672 + i),
]);
const portsInUseHere = new Set<number>();

interface LiveNode {
  readonly dir: string;
  readonly pidFile: string;
  pid: number | undefined;
  watchdogPid: number | undefined;
}

const liveNodes = new Set<LiveNode>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // Only synchronous work is possible here, so the node is killed rather than stopped cleanly.
  process.on('exit', () => {
    for (const node of liveNodes) {
      const pid = node.pid ?? readPid(node.pidFile);
      if (pid !== undefined) signal(pid, 'SIGKILL');
      if (node.watchdogPid !== undefined) signal(node.watchdogPid, 'SIGKILL');
      try {
        rmSync(node.dir, { recursive: true, force: true });
      } catch {
        // Best effort while exiting.
      }
    }
  });
}

function signal(pid: number, name: NodeJS.Signals): void {
  try {
    process.kill(pid, name);
  } catch {
    // Already gone.
  }
}

function readPid(pidFile: string): number | undefined {
  try {
    const pid = Number(readFileSync(pidFile, 'utf8').trim());
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** True while `pid` exists and is not a zombie. */
export function isProcessAlive(pid: number): boolean {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return false;
  }
  const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
  return state !== 'Z' && state !== 'X';
}

/**
 * Pids of live processes that belong to `nodeName`: the node's VM and its helpers (erl_child_setup,
 * inet_gethost, the disk monitor's shell), which carry the name only in their environment since 3.10
 * sets it at runtime rather than on the command line, plus any CLI aimed at it with `-n`.
 */
export async function processesForNode(nodeName: string): Promise<number[]> {
  const pids: number[] = [];
  for (const entry of await readdir('/proc')) {
    const pid = Number(entry);
    if (!/^\d+$/.test(entry) || pid === process.pid) continue;
    try {
      const [cmdline, environ] = await Promise.all([
        readFile(`/proc/${entry}/cmdline`, 'utf8'),
        readFile(`/proc/${entry}/environ`, 'utf8'),
      ]);
      const mentions =
        cmdline.split('\0').includes(nodeName) ||
        environ.split('\0').includes(`RABBITMQ_NODENAME=${nodeName}`);
      if (mentions && isProcessAlive(pid)) pids.push(pid);
    } catch {
      // Exited while we were looking, or not ours to read.
    }
  }
  return pids;
}

/** True if something accepts TCP connections on host:port. */
export function isPortOpen(port: number, host = '127.0.0.1'): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ port, host });
    const done = (open: boolean): void => {
      socket.destroy();
      resolve(open);
    };
    socket.setTimeout(2_000, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

function probePort(port: number): Promise<number | undefined> {
  return new Promise((resolve) => {
    const server = createServer();
    server.unref();
    server.once('error', () => resolve(undefined));
    server.listen({ port, host: '127.0.0.1', exclusive: true }, () => {
      const address = server.address();
      const bound = typeof address === 'object' && address ? address.port : undefined;
      server.close(() => resolve(bound));
    });
  });
}

/** A port that is free right now, not reserved by RabbitMQ and not handed out before in this process. */
export async function freePort(): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = await probePort(0);
    if (port === undefined || RESERVED_PORTS.has(port) || portsInUseHere.has(port)) continue;
    portsInUseHere.add(port);
    return port;
  }
  throw new Error('could not find a free port');
}

/** Names registered with epmd, mapped to their distribution ports. */
export function epmdNames(port = Number(process.env.ERL_EPMD_PORT ?? 4369)): Promise<Map<string, number>> {
  return new Promise((resolve, reject) => {
    const socket = createConnection({ port, host: '127.0.0.1' });
    const chunks: Buffer[] = [];
    socket.setTimeout(2_000, () => socket.destroy(new Error('epmd did not answer')));
    socket.once('connect', () => socket.write(Buffer.from([0, 1, 110]))); // NAMES_REQ
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.once('error', reject);
    socket.once('close', (hadError) => {
      if (hadError) return;
      const names = new Map<string, number>();
      // The reply is epmd's own port (4 bytes), then one "name <n> at port <p>" line per node.
      for (const match of Buffer.concat(chunks)
        .subarray(4)
        .toString('utf8')
        .matchAll(/^name (\S+) at port (\d+)$/gm)) {
        if (match[1] && match[2]) names.set(match[1], Number(match[2]));
      }
      resolve(names);
    });
  });
}

function shortName(nodeName: string): string {
  return nodeName.slice(0, nodeName.indexOf('@'));
}

async function readLog(dir: string, nodeName: string): Promise<string> {
  try {
    return await readFile(join(dir, 'log', `${nodeName}.log`), 'utf8');
  } catch {
    return '';
  }
}

/** The first error lines say why a boot failed; the ones after them are mostly supervisor term dumps. */
function logExcerpt(log: string): string {
  const lines = log.trimEnd().split('\n');
  const firstError = lines.findIndex((line) => line.includes('[error]'));
  const excerpt = firstError >= 0 ? lines.slice(firstError, firstError + 15) : lines.slice(-15);
  return excerpt.length > 0 ? excerpt.join('\n') : '(the node wrote no log)';
}

/** The "Slogan:" line of an Erlang crash dump (why the VM died), if there is a dump. */
async function crashSlogan(path: string): Promise<string | undefined> {
  let dump: string;
  try {
    dump = await readFile(path, 'utf8');
  } catch {
    return undefined;
  }
  // The VM may still be writing the dump; the slogan is on its third line.
  return /^Slogan: (.*)$/m.exec(dump.slice(0, 64 * 1024))?.[1];
}

/** Thrown by startPrivateNode; `portInUse` tells a port clash (worth a retry on other ports) from other failures. */
export class PrivateNodeStartError extends Error {
  readonly portInUse: boolean;

  constructor(message: string, portInUse: boolean, cause: unknown) {
    super(message, { cause });
    this.name = 'PrivateNodeStartError';
    this.portInUse = portInUse;
  }
}

interface NodeTlsFiles {
  readonly port: number;
  readonly caFile: string;
  readonly certFile: string;
  readonly keyFile: string;
  readonly verifyPeer: boolean;
  readonly failIfNoPeerCert: boolean;
}

function rabbitmqConf(amqpPort: number, options: PrivateNodeOptions, tls: NodeTlsFiles | undefined): string {
  const lines = [`listeners.tcp.default = 127.0.0.1:${amqpPort}`];
  if (options.consumerTimeoutMs !== undefined) lines.push(`consumer_timeout = ${options.consumerTimeoutMs}`);
  if (tls !== undefined) {
    lines.push(
      `listeners.ssl.default = 127.0.0.1:${tls.port}`,
      `ssl_options.cacertfile = ${tls.caFile}`,
      `ssl_options.certfile = ${tls.certFile}`,
      `ssl_options.keyfile = ${tls.keyFile}`,
      `ssl_options.verify = ${tls.verifyPeer ? 'verify_peer' : 'verify_none'}`,
      `ssl_options.fail_if_no_peer_cert = ${tls.failIfNoPeerCert}`,
    );
  }
  return `${lines.join('\n')}\n`;
}

/**
 * The node runs as `rabbitmq` and its config schema refuses files that user cannot read, so the
 * certificate and key are copied into the node's own directory, which is handed to that user.
 */
async function copyTlsFiles(dir: string, port: number, tls: PrivateNodeTlsOptions): Promise<NodeTlsFiles> {
  const tlsDir = join(dir, 'tls');
  await mkdir(tlsDir, { mode: 0o700 });
  const files = {
    caFile: join(tlsDir, 'ca.pem'),
    certFile: join(tlsDir, 'server.pem'),
    keyFile: join(tlsDir, 'server.key'),
  };
  await copyFile(tls.caFile, files.caFile);
  await copyFile(tls.certFile, files.certFile);
  await copyFile(tls.keyFile, files.keyFile);
  await chmod(files.keyFile, 0o600);
  return {
    port,
    ...files,
    verifyPeer: tls.verifyPeer ?? true,
    failIfNoPeerCert: tls.failIfNoPeerCert ?? false,
  };
}

function advancedConfig(options: PrivateNodeOptions): string {
  // channel_tick_interval has no rabbitmq.conf key in 3.10, hence advanced.config.
  if (options.channelTickMs === undefined) return '[].\n';
  return `[{rabbit, [{channel_tick_interval, ${options.channelTickMs}}]}].\n`;
}

async function chownTree(path: string, uid: number, gid: number): Promise<void> {
  await chown(path, uid, gid);
  for (const entry of await readdir(path, { withFileTypes: true })) {
    const child = join(path, entry.name);
    if (entry.isDirectory()) await chownTree(child, uid, gid);
    else await chown(child, uid, gid);
  }
}

/**
 * Stops the node when this process disappears (any cause, SIGKILL included) by polling for the
 * parent. It has to wait for the pid file because the parent may die while the node is still booting.
 */
function startWatchdog(dir: string, pidFile: string): number | undefined {
  // A zombie still answers `kill -0`, so liveness is read from the state field of /proc/<pid>/stat.
  const script = [
    'parent=$1; dir=$2; pidfile=$3',
    'alive() { s=$(sed -n "s/.*) \\(.\\).*/\\1/p" "/proc/$1/stat" 2>/dev/null); [ -n "$s" ] && [ "$s" != Z ]; }',
    `while alive "$parent"; do sleep ${WATCHDOG_INTERVAL_S}; done`,
    'i=0',
    'while [ -d "$dir" ] && [ ! -s "$pidfile" ] && [ $i -lt 60 ]; do sleep 0.5; i=$((i+1)); done',
    'if [ -s "$pidfile" ]; then',
    '  pid=$(cat "$pidfile")',
    '  kill -TERM "$pid" 2>/dev/null',
    '  i=0; while alive "$pid" && [ $i -lt 150 ]; do sleep 0.1; i=$((i+1)); done',
    '  kill -KILL "$pid" 2>/dev/null',
    'fi',
    'rm -rf "$dir"',
  ].join('\n');
  const child = spawn('/bin/sh', ['-c', script, 'rabbit-node-watchdog', String(process.pid), dir, pidFile], {
    detached: true,
    stdio: 'ignore',
  });
  child.on('error', () => {});
  child.unref();
  return child.pid;
}

/**
 * Starts a private RabbitMQ node and resolves once it accepts AMQP connections. Retries once with
 * new ports if it picked them itself, in case another process grabbed one between probe and bind.
 */
export async function startPrivateNode(options: PrivateNodeOptions = {}): Promise<PrivateNode> {
  const pickedPorts =
    options.amqpPort === undefined && options.distPort === undefined && options.tls?.port === undefined;
  try {
    return await launch(options);
  } catch (error) {
    if (!pickedPorts || !(error instanceof PrivateNodeStartError) || !error.portInUse) throw error;
    return launch(options);
  }
}

async function launch(options: PrivateNodeOptions): Promise<PrivateNode> {
  const startedAt = Date.now();
  const deadline = startedAt + (options.startTimeoutMs ?? DEFAULT_START_TIMEOUT_MS);
  const cli = await rabbitCli();
  const amqpPort = options.amqpPort ?? (await freePort());
  const distPort = options.distPort ?? (await freePort());
  const tlsPort = options.tls === undefined ? undefined : (options.tls.port ?? (await freePort()));
  const nodeName = `pgqb-${Date.now().toString(36)}-${randomBytes(4).toString('hex')}@localhost`;
  const dir = await mkdtemp(join(tmpdir(), 'pgqb-rabbit-'));
  const pidFile = join(dir, 'rabbit.pid');
  const crashDump = join(dir, 'erl_crash.dump');
  const live: LiveNode = { dir, pidFile, pid: undefined, watchdogPid: undefined };
  installExitHook();
  liveNodes.add(live);

  const url = `amqp://guest:guest@127.0.0.1:${amqpPort}`;
  // `localhost`, not 127.0.0.1: the name a certificate is usually issued for and checked against.
  const tlsUrl = tlsPort === undefined ? undefined : `amqps://guest:guest@localhost:${tlsPort}`;
  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= stopNode(live, nodeName, amqpPort, distPort, tlsPort);
    return stopping;
  };

  try {
    await mkdir(join(dir, 'mnesia'));
    await mkdir(join(dir, 'log'));
    const tlsFiles =
      options.tls === undefined || tlsPort === undefined
        ? undefined
        : await copyTlsFiles(dir, tlsPort, options.tls);
    await writeFile(join(dir, 'rabbitmq.conf'), rabbitmqConf(amqpPort, options, tlsFiles));
    await writeFile(join(dir, 'advanced.config'), advancedConfig(options));
    await writeFile(join(dir, 'enabled_plugins'), '[].\n');
    if (cli.user) await chownTree(dir, cli.user.uid, cli.user.gid);

    const command = await rabbitCommand('rabbitmq-server', {
      RABBITMQ_NODENAME: nodeName,
      RABBITMQ_NODE_PORT: String(amqpPort),
      RABBITMQ_DIST_PORT: String(distPort),
      RABBITMQ_MNESIA_BASE: join(dir, 'mnesia'),
      RABBITMQ_LOG_BASE: join(dir, 'log'),
      RABBITMQ_CONFIG_FILE: join(dir, 'rabbitmq.conf'),
      RABBITMQ_ADVANCED_CONFIG_FILE: join(dir, 'advanced.config'),
      RABBITMQ_ENABLED_PLUGINS_FILE: join(dir, 'enabled_plugins'),
      RABBITMQ_PID_FILE: pidFile,
      ERL_CRASH_DUMP: crashDump,
    });
    live.watchdogPid = startWatchdog(dir, pidFile);
    // -detached returns as soon as the VM is forked, before (and regardless of whether) it boots.
    const launched = await run(command.file, ['-detached'], {
      timeoutMs: 30_000,
      cwd: dir,
      env: command.env,
      ...(command.uid !== undefined && { uid: command.uid }),
      ...(command.gid !== undefined && { gid: command.gid }),
    });
    const launchedAt = Date.now();
    if (launched.exitCode !== 0) {
      throw new Error(`rabbitmq-server -detached exited ${launched.exitCode}: ${launched.stderr.trim()}`);
    }

    // Watching epmd costs nothing, whereas every rabbitmqctl call costs ~0.6 s of CPU that the
    // booting node would otherwise use.
    const name = shortName(nodeName);
    await waitFor(
      async () => {
        live.pid ??= readPid(pidFile);
        if (live.pid !== undefined && !isProcessAlive(live.pid)) {
          throw new BootFailed(`node process ${live.pid} exited during boot`);
        }
        const slogan = await crashSlogan(crashDump);
        if (slogan !== undefined) throw new BootFailed(`the Erlang VM crashed: ${slogan}`);
        if (live.pid === undefined && Date.now() - launchedAt > NO_PID_FILE_MS) {
          throw new BootFailed(`no pid file after ${NO_PID_FILE_MS} ms; the Erlang VM did not start`);
        }
        return (await epmdNames()).has(name);
      },
      {
        timeoutMs: Math.max(deadline - Date.now(), 0),
        intervalMs: 100,
        message: `${nodeName} registered with epmd`,
        stopOn: isBootFailure,
      },
    );

    // await_startup fails at once with 69 until the node is reachable, then blocks until the boot finishes.
    await waitFor(
      async () => {
        const seconds = Math.max(Math.ceil((deadline - Date.now()) / 1000), 1);
        try {
          await rabbitmqctl(['await_startup', '--timeout', String(seconds)], {
            node: nodeName,
            timeoutMs: seconds * 1000 + 10_000,
          });
          return true;
        } catch (error) {
          if (
            error instanceof RabbitmqctlError &&
            error.exitCode === 69 &&
            live.pid !== undefined &&
            isProcessAlive(live.pid)
          ) {
            return false;
          }
          throw new BootFailed(String((error as Error).message));
        }
      },
      {
        timeoutMs: Math.max(deadline - Date.now(), 0),
        intervalMs: 200,
        message: `${nodeName} booted`,
        stopOn: isBootFailure,
      },
    );

    live.pid ??= readPid(pidFile);
    if (live.pid === undefined) throw new Error(`${nodeName} booted but wrote no pid file`);
    await waitFor(() => canConnect(url), {
      timeoutMs: Math.max(deadline - Date.now(), 5_000),
      intervalMs: 100,
      message: `AMQP connection to ${url}`,
    });
    if (tlsPort !== undefined) {
      // Both listeners start in the same boot step; this only guards against a slow second bind.
      await waitFor(() => isPortOpen(tlsPort), {
        timeoutMs: Math.max(deadline - Date.now(), 5_000),
        intervalMs: 100,
        message: `AMQPS listener on port ${tlsPort}`,
      });
    }
  } catch (error) {
    const log = await readLog(dir, nodeName);
    const reason = (error as Error).message;
    await stop().catch(() => {});
    throw new PrivateNodeStartError(
      `private RabbitMQ node ${nodeName} failed to start: ${reason}\n${logExcerpt(log)}`,
      // An AMQP port clash shows in the log; a distribution port clash kills the VM before it logs.
      /eaddrinuse|dist_port_already_used/i.test(`${log}\n${reason}`),
      error,
    );
  }

  const startupMs = Date.now() - startedAt;
  const pid = live.pid;
  const ctl = (args: readonly string[]): Promise<string> => rabbitmqctl(args, { node: nodeName });
  return {
    url,
    nodeName,
    amqpPort,
    distPort,
    tlsUrl,
    tlsPort,
    dir,
    startupMs,
    pid,
    stop,
    rabbitmqctl: ctl,
    listQueues: () => listQueues({ node: nodeName }),
    async stopApp() {
      await ctl(['stop_app']);
    },
    async startApp() {
      await ctl(['start_app']);
      await waitFor(() => canConnect(url), {
        timeoutMs: 30_000,
        intervalMs: 100,
        message: `AMQP connection to ${url} after start_app`,
      });
    },
    async closeAllConnections(reason: string) {
      await ctl(['close_all_connections', reason]);
    },
  };
}

class BootFailed extends Error {}

function isBootFailure(error: Error): boolean {
  return error instanceof BootFailed;
}

async function canConnect(url: string): Promise<boolean> {
  try {
    const connection = await amqp.connect(url, { timeout: 2_000 });
    connection.on('error', () => {});
    await connection.close();
    return true;
  } catch {
    return false;
  }
}

async function stopNode(
  live: LiveNode,
  nodeName: string,
  amqpPort: number,
  distPort: number,
  tlsPort: number | undefined,
): Promise<void> {
  const pid = live.pid ?? readPid(live.pidFile);
  let asked = false;
  try {
    // Not `stop <pidfile>`: the node deletes its pid file while halting, and the CLI then waits
    // for the file to reappear until it is killed. It also takes a zombie VM for a live one.
    await rabbitmqctl(['stop', '--idempotent'], { node: nodeName, timeoutMs: STOP_TIMEOUT_MS });
    asked = true;
  } catch {
    // Unreachable or hung: signals below.
  }
  if (pid !== undefined) {
    const exited = (timeoutMs: number): Promise<boolean> =>
      waitFor(() => !isProcessAlive(pid), { timeoutMs, intervalMs: 50 }).then(
        () => true,
        () => false,
      );
    // `stop` returns once the node has agreed to halt; the VM needs about another second to exit.
    if (!(asked && (await exited(15_000)))) {
      signal(pid, 'SIGTERM');
      if (!(await exited(10_000))) {
        signal(pid, 'SIGKILL');
        if (!(await exited(10_000))) throw new Error(`${nodeName} (pid ${pid}) survived SIGKILL`);
      }
    }
  }
  await waitFor(async () => !(await isPortOpen(amqpPort)), {
    timeoutMs: 10_000,
    intervalMs: 50,
    message: `port ${amqpPort} closed`,
  });
  if (live.watchdogPid !== undefined) signal(live.watchdogPid, 'SIGKILL');
  await rm(live.dir, { recursive: true, force: true });
  liveNodes.delete(live);
  portsInUseHere.delete(amqpPort);
  portsInUseHere.delete(distPort);
  if (tlsPort !== undefined) portsInUseHere.delete(tlsPort);
}
