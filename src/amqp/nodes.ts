/**
 * The broker nodes a connection may use and the order it tries them in: one URL per node, as
 * the config lists them (multi-host URLs already expanded, see config/broker-urls.ts).
 *
 * Each replica starts at its own offset into the list, so replicas that start together spread
 * over the nodes instead of all landing on the first; every failed connect and every lost
 * connection moves on to the next node in turn.
 */

export interface BrokerNode {
  readonly url: string;
  /** host:port, without credentials: what logs, metrics and /status show. */
  readonly address: string;
}

export interface NodeMove {
  readonly from: BrokerNode;
  readonly to: BrokerNode;
}

/** The default port shows, so two spellings of one node are one address. */
export function nodeAddress(url: string): string {
  try {
    const parsed = new URL(url);
    const port = parsed.port !== '' ? parsed.port : parsed.protocol === 'amqps:' ? '5671' : '5672';
    return `${parsed.hostname}:${port}`;
  } catch {
    return url.replace(/^.*@/, '').replace(/^amqps?:\/\//i, '');
  }
}

/** Every node of the given URLs, in order, each once. */
export function brokerNodes(urls: readonly string[]): BrokerNode[] {
  const nodes: BrokerNode[] = [];
  const seen = new Set<string>();
  for (const url of urls) {
    const address = nodeAddress(url);
    if (seen.has(address)) continue;
    seen.add(address);
    nodes.push({ url, address });
  }
  return nodes;
}

/** A position in [0, count) taken from a replica's identity (FNV-1a): stable across restarts of it. */
export function startIndex(identity: string, count: number): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < identity.length; i++) {
    hash ^= identity.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return count > 0 ? hash % count : 0;
}

export class NodeRotation {
  readonly #nodes: readonly BrokerNode[];
  #index: number;

  constructor(nodes: readonly BrokerNode[], start: number) {
    if (nodes.length === 0) throw new RangeError('a rotation needs at least one node');
    this.#nodes = nodes;
    this.#index = ((start % nodes.length) + nodes.length) % nodes.length;
  }

  get current(): BrokerNode {
    return this.#nodes[this.#index] as BrokerNode;
  }

  get size(): number {
    return this.#nodes.length;
  }

  /** Moves to the next node; undefined when there is no other node to move to. */
  advance(): NodeMove | undefined {
    if (this.#nodes.length === 1) return undefined;
    const from = this.current;
    this.#index = (this.#index + 1) % this.#nodes.length;
    return { from, to: this.current };
  }
}
