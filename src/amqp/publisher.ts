import type { ChannelModel, ConfirmChannel, Options } from 'amqplib';
import type { Logger } from 'pino';
import { BridgeError, toError } from '../errors.ts';
import { type ConnectFn, ConnectionKeeper, type ConnectionSettings } from './connection.ts';

/**
 * Publishes with publisher confirms on a connection of its own. RabbitMQ blocks a connection
 * that publishes during a memory or disk alarm, and a blocked connection also holds back acks, so
 * the consumer's connection never publishes.
 */
export class ConfirmPublisher {
  readonly #keeper: ConnectionKeeper;
  readonly #logger: Logger;
  #channel: ConfirmChannel | undefined;

  constructor(settings: ConnectionSettings, logger: Logger, connect?: ConnectFn) {
    this.#logger = logger;
    this.#keeper = new ConnectionKeeper(
      { ...settings, connectionName: `${settings.connectionName}-publisher` },
      {
        setup: (connection) => this.#setup(connection),
        onLost: () => {
          this.#channel = undefined;
        },
      },
      logger,
      connect,
    );
  }

  start(): void {
    this.#keeper.start();
  }

  get ready(): boolean {
    return this.#channel !== undefined;
  }

  /**
   * Resolves once the broker has confirmed the message; rejects (kind `transient`) on a nack,
   * a closed channel, or when not connected, so the caller can keep the original and retry.
   */
  publish(exchange: string, routingKey: string, content: Buffer, options: Options.Publish): Promise<void> {
    const channel = this.#channel;
    if (channel === undefined) {
      return Promise.reject(new BridgeError('transient', 'the publisher is not connected to the broker'));
    }
    return new Promise<void>((resolve, reject) => {
      try {
        channel.publish(exchange, routingKey, content, options, (error: unknown) => {
          if (error === null || error === undefined) resolve();
          else
            reject(new BridgeError('transient', 'the broker did not confirm the message', { cause: error }));
        });
      } catch (error) {
        // Thrown synchronously for a closing channel or a header table over 64 KiB.
        reject(new BridgeError('transient', `publish failed: ${toError(error).message}`, { cause: error }));
      }
    });
  }

  close(): Promise<void> {
    return this.#keeper.close();
  }

  async #setup(connection: ChannelModel): Promise<void> {
    const channel = await connection.createConfirmChannel();
    channel.on('error', (error: Error) =>
      this.#logger.error({ err: error }, 'publisher channel closed by the broker'),
    );
    channel.on('close', () => {
      if (this.#channel !== channel) return;
      this.#channel = undefined;
      // The connection may live on; a fresh connection brings a fresh channel.
      connection.close().catch(() => undefined);
    });
    this.#channel = channel;
  }
}
