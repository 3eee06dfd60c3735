import { createConnection, createServer, type Socket } from 'node:net';

/**
 * A loopback TCP proxy in front of one broker node, for cutting the network between one client
 * and that node and nothing else. `cut()` keeps every socket open but stops forwarding in both
 * directions, and holds new connections without answering: what a dropped route or a
 * partitioned switch looks like to both ends, which notice only by missed heartbeats.
 * `restore()` forwards again (on the connections that are still open).
 */
export interface TcpProxy {
  readonly port: number;
  readonly url: string;
  readonly target: number;
  cut(): void;
  restore(): void;
  /** Connections currently open through the proxy. */
  readonly connections: number;
  close(): Promise<void>;
}

export async function startTcpProxy(targetPort: number, urlFor: (port: number) => string): Promise<TcpProxy> {
  let cut = false;
  const pairs = new Set<[Socket, Socket | undefined]>();

  const forward = (from: Socket, to: () => Socket | undefined): void => {
    from.on('data', (chunk: Buffer) => {
      if (!cut) to()?.write(chunk);
    });
  };

  const server = createServer((client) => {
    const pair: [Socket, Socket | undefined] = [client, undefined];
    pairs.add(pair);
    const end = (): void => {
      pairs.delete(pair);
      client.destroy();
      pair[1]?.destroy();
    };
    client.on('error', end);
    client.on('close', end);
    forward(client, () => pair[1]);
    const open = (): void => {
      if (client.destroyed) return;
      const upstream = createConnection({ port: targetPort, host: '127.0.0.1' });
      pair[1] = upstream;
      upstream.on('error', end);
      upstream.on('close', end);
      forward(upstream, () => client);
    };
    // A connection made during a cut stays unanswered until the cut ends (or the client gives up).
    if (cut) waiting.push(open);
    else open();
  });
  let waiting: Array<() => void> = [];
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ port: 0, host: '127.0.0.1' }, () => resolve());
  });
  const address = server.address();
  const port = typeof address === 'object' && address !== null ? address.port : 0;
  return {
    port,
    url: urlFor(port),
    target: targetPort,
    cut() {
      cut = true;
    },
    restore() {
      cut = false;
      const held = waiting;
      waiting = [];
      for (const open of held) open();
    },
    get connections() {
      return pairs.size;
    },
    async close() {
      for (const [client, upstream] of pairs) {
        client.destroy();
        upstream?.destroy();
      }
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
