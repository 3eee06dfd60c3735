import { type PrivateNode, type PrivateNodeOptions, startPrivateNode } from './rabbit-node.ts';

/**
 * A RabbitMQ cluster of private nodes on loopback ports (see rabbit-node.ts): the nodes boot
 * side by side, then each after the first leaves its own one-node cluster and joins the first
 * (`stop_app; join_cluster; start_app`). They share the Erlang cookie of the user the CLI runs
 * as, which is what lets them and the CLI talk.
 *
 * Always call `stop()` in an `after` hook: it stops every node and removes its directory, and a
 * node whose stop fails does not keep the others running. The per-node watchdog and exit hook
 * cover a test process that dies first.
 */
export interface PrivateCluster {
  readonly nodes: readonly PrivateNode[];
  /** Wall time from launching the first node to the last one joined. */
  readonly startupMs: number;
  /** The node that leads a quorum queue right now, as a running node reports it. */
  leaderOf(queue: string, askingNode?: PrivateNode): Promise<PrivateNode>;
  stop(): Promise<void>;
}

export async function startPrivateCluster(
  size: number,
  options: PrivateNodeOptions = {},
): Promise<PrivateCluster> {
  const startedAt = Date.now();
  const booted = await Promise.allSettled(
    Array.from({ length: size }, () => startPrivateNode({ startTimeoutMs: 120_000, ...options })),
  );
  const nodes = booted.flatMap((result) => (result.status === 'fulfilled' ? [result.value] : []));
  const stop = async (): Promise<void> => {
    const stopped = await Promise.allSettled(nodes.map((node) => node.stop()));
    const failed = stopped.filter((r) => r.status === 'rejected');
    if (failed.length > 0)
      throw new AggregateError(
        failed.map((r) => r.reason),
        'stopping the cluster',
      );
  };
  try {
    const failedBoot = booted.find((result) => result.status === 'rejected');
    if (failedBoot !== undefined) throw failedBoot.reason;
    const [first, ...rest] = nodes;
    if (first === undefined) throw new RangeError('a cluster needs at least one node');
    for (const node of rest) {
      await node.rabbitmqctl(['stop_app']);
      await node.rabbitmqctl(['join_cluster', first.nodeName]);
      await node.startApp();
    }
    const status = JSON.parse(await first.rabbitmqctl(['cluster_status', '--formatter', 'json'])) as {
      running_nodes?: unknown[];
    };
    if (status.running_nodes?.length !== size) {
      throw new Error(`the cluster runs ${JSON.stringify(status.running_nodes)}, not ${size} nodes`);
    }
  } catch (error) {
    await stop().catch(() => undefined);
    throw error;
  }
  return {
    nodes,
    startupMs: Date.now() - startedAt,
    stop,
    async leaderOf(queue, askingNode = first(nodes)) {
      const stdout = await askingNode.rabbitmqctl([
        'list_queues',
        '-q',
        '--no-table-headers',
        'name',
        'leader',
      ]);
      const row = stdout.split('\n').find((line) => line.split('\t')[0] === queue);
      const leaderName = row?.split('\t')[1]?.trim();
      const leader = nodes.find((node) => node.nodeName === leaderName);
      if (leader === undefined) throw new Error(`no leader reported for ${queue}: ${JSON.stringify(row)}`);
      return leader;
    },
  };
}

function first(nodes: readonly PrivateNode[]): PrivateNode {
  const node = nodes[0];
  if (node === undefined) throw new RangeError('a cluster needs at least one node');
  return node;
}
