// A TCP forwarder whose link can be cut and restored, to take a service (PostgreSQL, say)
// away from its client the way a network failure does: open connections are closed and new
// ones refused, while both ends keep running.

import net from 'node:net';

/** A port that was free a moment ago (the probe socket is closed again). */
export function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once('error', reject);
    probe.listen(0, host, () => {
      const { port } = probe.address() as net.AddressInfo;
      probe.close(() => resolve(port));
    });
  });
}

export interface ForwardTarget {
  readonly host: string;
  readonly port: number;
}

export class TcpForwarder {
  readonly port: number;
  readonly #target: ForwardTarget;
  readonly #sockets = new Set<net.Socket>();
  #server: net.Server | undefined;

  private constructor(port: number, target: ForwardTarget) {
    this.port = port;
    this.#target = target;
  }

  /** Listens on 127.0.0.1:`preferredPort` when it is free, else on any free port. */
  static async start(target: ForwardTarget, preferredPort = 0): Promise<TcpForwarder> {
    try {
      const forwarder = new TcpForwarder(preferredPort === 0 ? await freePort() : preferredPort, target);
      await forwarder.restore();
      return forwarder;
    } catch (error: unknown) {
      if (!(error instanceof Error && 'code' in error && error.code === 'EADDRINUSE')) throw error;
      return TcpForwarder.start(target);
    }
  }

  get up(): boolean {
    return this.#server !== undefined;
  }

  /** Accepts connections again, on the same port. */
  restore(): Promise<void> {
    if (this.#server !== undefined) return Promise.resolve();
    const server = net.createServer((client) => this.#forward(client));
    this.#server = server;
    return new Promise((resolve, reject) => {
      server.once('error', (error) => {
        this.#server = undefined;
        reject(error);
      });
      server.listen(this.port, '127.0.0.1', () => resolve());
    });
  }

  #forward(client: net.Socket): void {
    const upstream = net.connect(this.#target.port, this.#target.host);
    for (const socket of [client, upstream]) {
      this.#sockets.add(socket);
      socket.on('close', () => this.#sockets.delete(socket));
      // One side failing ends the pair, as a broken link would.
      socket.on('error', () => {
        client.destroy();
        upstream.destroy();
      });
    }
    client.pipe(upstream);
    upstream.pipe(client);
  }

  /** Closes every forwarded connection and refuses new ones until restore(). */
  async cut(): Promise<void> {
    const server = this.#server;
    this.#server = undefined;
    const closed = new Promise<void>((resolve) =>
      server === undefined ? resolve() : server.close(() => resolve()),
    );
    for (const socket of this.#sockets) socket.destroy();
    await closed;
  }

  close(): Promise<void> {
    return this.cut();
  }
}
