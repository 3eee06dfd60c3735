import { readFileSync } from 'node:fs';
import net from 'node:net';
import type { ChannelModel } from 'amqplib';
import amqp from 'amqplib';
import pino from 'pino';
import { type BrokerFault, connectFault, declareFault } from '../amqp/faults.ts';
import { type Config, loadConfig } from '../config/config.ts';
import { ConfigError, errorCode, toError } from '../errors.ts';
import { createTokenSource } from '../postgrest/auth.ts';
import { type ExpectedFunction, type ProbeReport, probeEndpoint } from '../postgrest/probe.ts';

/**
 * What the checks look at, each fetched once and shared: the config, a TCP connect, one AMQP
 * connection, and the endpoint probe per function. Nothing is declared or published: queues are
 * checked passively, or redeclared with the bridge's own arguments only when they already exist
 * (a no-op when they match, 406 when they do not).
 */

type Env = Readonly<Record<string, string | undefined>>;

export type QueueState =
  | { readonly exists: true }
  | { readonly exists: false }
  | { readonly fault: BrokerFault };

export class DoctorContext {
  readonly configPath: string | undefined;
  readonly env: Env;
  #config: { config?: Config; problems?: readonly string[] } | undefined;
  #tcp: Promise<string | undefined> | undefined;
  /** The node the TCP check reached. */
  #node: string | undefined;
  #broker: Promise<{ connection?: ChannelModel; fault?: BrokerFault }> | undefined;
  readonly #probes = new Map<string, Promise<ProbeReport>>();

  constructor(configPath: string | undefined, env: Env) {
    this.configPath = configPath;
    this.env = env;
  }

  /** The config, or the problems that make it invalid. */
  load(): { config?: Config; problems?: readonly string[] } {
    if (this.#config !== undefined) return this.#config;
    try {
      this.#config = { config: loadConfig(this.configPath, this.env) };
    } catch (error) {
      if (!(error instanceof ConfigError)) throw error;
      this.#config = { problems: error.problems };
    }
    return this.#config;
  }

  get config(): Config {
    const { config } = this.load();
    if (config === undefined) throw new Error('the config is invalid');
    return config;
  }

  /**
   * The first broker node (of `amqp.url`/`urls`, in order) that accepts a TCP connection; the
   * broker checks then talk to that node. Undefined when one opens, else why none did.
   */
  tcp(): Promise<string | undefined> {
    this.#tcp ??= (async () => {
      const problems: string[] = [];
      for (const url of this.config.amqp.nodes) {
        const problem = await this.#tcpTo(url);
        if (problem === undefined) {
          this.#node = url;
          return undefined;
        }
        problems.push(problem);
      }
      return problems.join('; ');
    })();
    return this.#tcp;
  }

  #tcpTo(nodeUrl: string): Promise<string | undefined> {
    return new Promise((resolve) => {
      const url = new URL(nodeUrl);
      const port = Number(url.port || (url.protocol === 'amqps:' ? 5671 : 5672));
      const socket = net.connect({ host: url.hostname, port });
      socket.setTimeout(this.config.amqp.connectTimeoutMs, () =>
        socket.destroy(Object.assign(new Error('no answer'), { code: 'ETIMEDOUT' })),
      );
      socket.once('connect', () => {
        socket.destroy();
        resolve(undefined);
      });
      socket.once('error', (error) => resolve(`${errorCode(error) ?? 'error'} ${url.hostname}:${port}`));
    });
  }

  broker(): Promise<{ connection?: ChannelModel; fault?: BrokerFault }> {
    this.#broker ??= (async () => {
      const { connectTimeoutMs, connectionName, nodes } = this.config.amqp;
      const url = this.#node ?? nodes[0] ?? '';
      try {
        const connection = await amqp.connect(url, {
          timeout: connectTimeoutMs,
          clientProperties: { connection_name: `${connectionName}-doctor` },
        });
        connection.on('error', () => undefined);
        return { connection };
      } catch (error) {
        return { fault: connectFault(error, url) };
      }
    })();
    return this.#broker;
  }

  /** Whether `queue` exists and, when `declare`, whether the bridge's declare would be accepted. */
  async queue(
    queue: string,
    declare: Record<string, string | number | boolean> | undefined,
    keys: { readonly arguments: string; readonly queue: string },
  ): Promise<QueueState> {
    const { connection } = await this.broker();
    if (connection === undefined) throw new Error('no broker connection');
    // Each step on a channel of its own: a refused one closes the channel it was made on.
    const attempt = async (step: (channel: amqp.Channel) => Promise<unknown>): Promise<unknown> => {
      const channel = await connection.createChannel();
      channel.on('error', () => undefined);
      try {
        await step(channel);
        return undefined;
      } catch (error) {
        return error ?? new Error('refused');
      } finally {
        await channel.close().catch(() => undefined);
      }
    };
    const missing = await attempt((channel) => channel.checkQueue(queue));
    if (missing !== undefined) {
      const fault = declareFault(missing, queue, keys);
      return fault.kind === 'queue_missing' ? { exists: false } : { fault };
    }
    if (declare === undefined) return { exists: true };
    const refused = await attempt((channel) =>
      channel.assertQueue(queue, { durable: true, arguments: declare }),
    );
    return refused === undefined ? { exists: true } : { fault: declareFault(refused, queue, keys) };
  }

  probe(fn: ExpectedFunction): Promise<ProbeReport> {
    let report = this.#probes.get(fn.name);
    if (report === undefined) {
      report = (async () => {
        const { postgrest } = this.config;
        const tokens = await createTokenSource(postgrest, pino({ level: 'silent' }));
        try {
          return await probeEndpoint({
            url: postgrest.url,
            schema: postgrest.schema,
            timeoutMs: postgrest.timeoutMs,
            ca: postgrest.caFile === undefined ? undefined : readFileSync(postgrest.caFile),
            token: tokens?.token(),
            functions: [fn],
          });
        } finally {
          tokens?.close();
        }
      })();
      this.#probes.set(fn.name, report);
    }
    return report;
  }

  async close(): Promise<void> {
    const broker = await this.#broker?.catch(() => undefined);
    await broker?.connection?.close().catch((error: unknown) => toError(error));
  }
}
