import { BridgeProcess } from './bridge-process.ts';
import { type Environment, type Mode, startEnvironment } from './environment.ts';
import { finishAndAccount, type ScenarioReport, waitForProgress } from './fault-scenario.ts';
import { TestBroker, waitFor } from './rabbit.ts';
import type { PrivateCluster } from './rabbit-cluster.ts';
import type { PrivateNode } from './rabbit-node.ts';
import { type ScenarioMessage, scenarioMessages } from './scenario.ts';
import { startTcpProxy, type TcpProxy } from './tcp-proxy.ts';

/**
 * Fault scenarios on a RabbitMQ cluster: two bridge replicas (real processes) consume one
 * quorum queue while messages are published at a steady pace, a fault is injected mid-stream,
 * and every message is accounted for by id.
 *
 * Each replica reaches every node through proxies of its own (tcp-proxy.ts), so the network
 * between one replica and one node can be cut without touching anything else, and the node a
 * replica uses is read from its /status. Messages are published through a node the fault leaves
 * alone: a publish that fails would leave it unknown whether the message exists.
 */

const QUORUM = { 'x-queue-type': 'quorum' } as const;
/** Short, so a cut longer than two heartbeats stays short too. */
export const HEARTBEAT_SECONDS = 2;

export interface Replica {
  readonly bridge: BridgeProcess;
  /** One per cluster node, in the cluster's order. */
  readonly proxies: readonly TcpProxy[];
  readonly httpPort: number;
}

export interface ReplicaStatus {
  readonly ready: boolean;
  readonly brokerNode: string | null;
  readonly [key: string]: unknown;
}

/** What a fault needs: the cluster, the replicas, and ways to look at them. */
export class ClusterRun {
  readonly cluster: PrivateCluster;
  readonly env: Environment;
  readonly replicas: Replica[] = [];
  readonly #config: Record<string, unknown>;
  readonly #retired: Replica[] = [];

  constructor(cluster: PrivateCluster, env: Environment, config: Record<string, unknown>) {
    this.cluster = cluster;
    this.env = env;
    this.#config = config;
  }

  async startReplica(): Promise<Replica> {
    const proxies = await Promise.all(
      this.cluster.nodes.map((node) =>
        startTcpProxy(node.amqpPort, (port) => `amqp://guest:guest@127.0.0.1:${port}`),
      ),
    );
    const config = {
      ...this.#config,
      amqp: {
        urls: proxies.map((p) => p.url),
        heartbeatSeconds: HEARTBEAT_SECONDS,
        reconnectInitialDelayMs: 100,
        reconnectMaxDelayMs: 1000,
      },
    };
    const bridge = new BridgeProcess(config);
    const listening = await bridge.waitForLog((r) => r.msg === 'health and metrics endpoint listening');
    const replica = { bridge, proxies, httpPort: Number(listening.port) };
    this.replicas.push(replica);
    await bridge.waitUntilReady(60_000);
    return replica;
  }

  async kill(replica: Replica): Promise<void> {
    await replica.bridge.stop('SIGKILL');
    this.replicas.splice(this.replicas.indexOf(replica), 1);
    this.#retired.push(replica);
  }

  async status(replica: Replica): Promise<ReplicaStatus> {
    const response = await fetch(`http://127.0.0.1:${replica.httpPort}/status`);
    return (await response.json()) as ReplicaStatus;
  }

  /** The proxy the replica's consumer is connected through, and the node behind it. */
  async connection(replica: Replica): Promise<{ proxy: TcpProxy; node: PrivateNode } | undefined> {
    const { brokerNode } = await this.status(replica);
    const proxy = replica.proxies.find((p) => brokerNode === `127.0.0.1:${p.port}`);
    const node = this.cluster.nodes.find((n) => n.amqpPort === proxy?.target);
    return proxy === undefined || node === undefined ? undefined : { proxy, node };
  }

  async nodeOf(replica: Replica): Promise<PrivateNode> {
    const connection = await this.connection(replica);
    if (connection === undefined) throw new Error('the replica is not connected to a node');
    return connection.node;
  }

  async everyReplicaReady(timeoutMs = 60_000): Promise<void> {
    await waitFor(
      async () => (await Promise.all(this.replicas.map((r) => this.status(r)))).every((s) => s.ready),
      { timeoutMs, intervalMs: 200, message: 'every replica ready' },
    );
  }

  /** Broker failovers counted by the replicas still running. */
  async failovers(): Promise<number> {
    let total = 0;
    for (const replica of this.replicas) {
      const text = await (await fetch(`http://127.0.0.1:${replica.httpPort}/metrics`)).text();
      for (const line of text.split('\n')) {
        if (line.startsWith('pgq_bridge_broker_failovers_total{'))
          total += Number(line.slice(line.lastIndexOf(' ') + 1));
      }
    }
    return total;
  }

  async close(): Promise<void> {
    await Promise.all(this.replicas.map((r) => r.bridge.stop('SIGTERM')));
    for (const replica of [...this.replicas, ...this.#retired]) {
      await Promise.all(replica.proxies.map((p) => p.close()));
    }
  }
}

export interface ClusterFault {
  /** A node the test must not publish through while the fault runs. */
  readonly spare?: PrivateNode;
  /** Injects the fault and undoes it; every node runs again when it returns. */
  readonly inject: () => Promise<void>;
}

export interface ClusterScenario {
  readonly name: string;
  readonly mode: Mode;
  /** Run with the idempotency ledger (sql/install-ledger.sql and its `_once` functions). */
  readonly ledger: boolean;
  readonly count: number;
  readonly plan: (run: ClusterRun) => Promise<ClusterFault>;
}

export interface ClusterReport extends ScenarioReport {
  readonly name: string;
  readonly mode: Mode;
  readonly ledger: boolean;
  readonly failovers: number;
}

export async function runClusterScenario(
  cluster: PrivateCluster,
  scenario: ClusterScenario,
): Promise<ClusterReport> {
  const observer = cluster.nodes[0];
  if (observer === undefined) throw new RangeError('an empty cluster');
  const batch = scenario.mode === 'batch';
  const env = await startEnvironment('cluster', {
    amqpUrl: observer.url,
    node: observer.nodeName,
    batch,
    ledger: scenario.ledger,
  });
  const run = new ClusterRun(cluster, env, bridgeConfig(env));
  let publisher: TestBroker | undefined;
  try {
    const channel = await env.broker.channel();
    await channel.assertQueue(env.queue, { durable: true, arguments: QUORUM });
    await channel.assertQueue(env.deadLetterQueue, { durable: true, arguments: QUORUM });
    await Promise.all([run.startReplica(), run.startReplica()]);

    const fault = await scenario.plan(run);
    const through = cluster.nodes.find((n) => n !== fault.spare) ?? observer;
    publisher = await TestBroker.connect(through.url);
    const started = Date.now();
    const messages = scenarioMessages(scenario.count, `${scenario.name}-${scenario.mode}`);
    const publishing = publishPaced(publisher, env.queue, messages);
    await waitForProgress(env, scenario.count / 4);
    await fault.inject();
    await publishing;
    await run.everyReplicaReady();
    const report = await finishAndAccount(env, messages, started);
    return {
      ...report,
      name: scenario.name,
      mode: scenario.mode,
      ledger: scenario.ledger,
      failovers: await run.failovers(),
    };
  } finally {
    await publisher?.close();
    await run.close();
    await env.close();
  }
}

function bridgeConfig(env: Environment): Record<string, unknown> {
  return env.bridgeConfig({ source: { queueArguments: QUORUM, deadLetterQueueArguments: QUORUM } });
}

/** About 300 messages a second in small confirmed chunks, so a fault lands while publishing goes on. */
async function publishPaced(
  broker: TestBroker,
  queue: string,
  messages: readonly ScenarioMessage[],
): Promise<void> {
  const chunk = 60;
  for (let i = 0; i < messages.length; i += chunk) {
    const sentAt = Date.now();
    await broker.publish(
      queue,
      messages.slice(i, i + chunk).map((m) => ({
        body: m.body,
        options: { messageId: m.id, persistent: true, contentType: 'application/json' },
      })),
    );
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, 200 - (Date.now() - sentAt))));
  }
}

/** The per-scenario table: one row per scenario, mode and ledger setting. */
export function reportTable(reports: readonly ClusterReport[]): string {
  const header =
    '| scenario | mode | ledger | published | lost | duplicate jobs | duplicate dead letters | failovers | seconds |';
  const rows = reports.map(
    (r) =>
      `| ${r.name} | ${r.mode} | ${r.ledger ? 'on' : 'off'} | ${r.published} | ${r.missing.length} | ${r.duplicateJobs} | ${r.duplicateDeadLetters} | ${r.failovers} | ${r.seconds.toFixed(1)} |`,
  );
  return [header, '|---|---|---|---|---|---|---|---|---|', ...rows].join('\n');
}
