import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  type ClusterFault,
  type ClusterReport,
  type ClusterRun,
  HEARTBEAT_SECONDS,
  type Replica,
  reportTable,
  runClusterScenario,
} from '../support/cluster-scenario.ts';
import { MODES } from '../support/environment.ts';
import { assertAccounted } from '../support/fault-scenario.ts';
import { waitFor } from '../support/rabbit.ts';
import { type PrivateCluster, startPrivateCluster } from '../support/rabbit-cluster.ts';

/**
 * Faults on a three-node RabbitMQ cluster (private nodes, one cluster shared by every
 * scenario) while two bridge replicas consume a quorum queue and messages keep arriving: the
 * node a replica uses stopped, the queue's leader stopped, a node restarted, the network between
 * a replica and its node cut for longer than two heartbeats, a replica SIGKILLed. Each ends with
 * an exact accounting by message id and a row of the table printed at the end.
 *
 * Every scenario runs at least once and with the idempotency ledger (sql/install-ledger.sql, the
 * source's identity the AMQP message-id): with it, no message may become two jobs.
 */

const COUNT = 2400;
const LEDGER_MODES = [false, true] as const;

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

function replica(run: ClusterRun, index: number): Replica {
  const found = run.replicas[index];
  if (found === undefined) throw new Error(`no replica ${index}`);
  return found;
}

/** Waits until the replica's consumer is ready on a node other than `node`. */
async function movedOff(run: ClusterRun, which: Replica, nodeName: string): Promise<void> {
  await waitFor(
    async () => {
      const status = await run.status(which);
      const connection = await run.connection(which);
      return status.ready && connection !== undefined && connection.node.nodeName !== nodeName;
    },
    { timeoutMs: 30_000, intervalMs: 200, message: `the replica to move off ${nodeName}` },
  );
}

const SCENARIOS: ReadonlyArray<{
  readonly name: string;
  readonly plan: (run: ClusterRun) => Promise<ClusterFault>;
  /** Failovers the scenario must cause at least. */
  readonly minFailovers: number;
}> = [
  {
    name: 'node of a replica stopped',
    minFailovers: 1,
    plan: async (run) => {
      const target = await run.nodeOf(replica(run, 0));
      return {
        spare: target,
        inject: async () => {
          await target.stopApp();
          await movedOff(run, replica(run, 0), target.nodeName);
          await sleep(2000);
          await target.startApp();
        },
      };
    },
  },
  {
    name: 'queue leader stopped',
    minFailovers: 0,
    plan: async (run) => {
      const leader = await run.cluster.leaderOf(run.env.queue);
      const asking = run.cluster.nodes.find((n) => n !== leader);
      return {
        spare: leader,
        inject: async () => {
          await leader.stopApp();
          await waitFor(async () => (await run.cluster.leaderOf(run.env.queue, asking)) !== leader, {
            timeoutMs: 30_000,
            intervalMs: 250,
            message: 'a new leader',
          });
          await run.everyReplicaReady();
          await sleep(2000);
          await leader.startApp();
        },
      };
    },
  },
  {
    name: 'node restarted',
    minFailovers: 1,
    plan: async (run) => {
      const target = await run.nodeOf(replica(run, 1));
      return {
        spare: target,
        inject: async () => {
          await target.stopApp();
          await target.startApp();
        },
      };
    },
  },
  {
    name: `network cut ${3 * HEARTBEAT_SECONDS} s`,
    minFailovers: 1,
    plan: async (run) => {
      const cutOff = replica(run, 0);
      const connection = await run.connection(cutOff);
      if (connection === undefined) throw new Error('the replica is not connected');
      return {
        inject: async () => {
          connection.proxy.cut();
          // Longer than two heartbeats: both ends give the connection up.
          await sleep(3 * HEARTBEAT_SECONDS * 1000);
          await movedOff(run, cutOff, connection.node.nodeName);
          connection.proxy.restore();
        },
      };
    },
  },
  {
    name: 'replica SIGKILLed',
    minFailovers: 0,
    plan: async (run) => ({
      inject: async () => {
        await run.kill(replica(run, 0));
        await run.startReplica();
      },
    }),
  },
];

describe('faults on a three-node RabbitMQ cluster, two replicas, quorum queues', () => {
  let cluster: PrivateCluster | undefined;
  const reports: ClusterReport[] = [];
  const startedAt = Date.now();

  before(async () => {
    cluster = await startPrivateCluster(3);
  });

  after(async () => {
    const table = reportTable(reports);
    await cluster?.stop();
    const seconds = ((Date.now() - startedAt) / 1000).toFixed(0);
    console.log(
      `\ncluster scenarios (cluster up in ${((cluster?.startupMs ?? 0) / 1000).toFixed(1)} s, suite ${seconds} s):\n${table}\n`,
    );
  });

  for (const ledger of LEDGER_MODES)
    for (const mode of MODES)
      for (const scenario of SCENARIOS)
        it(`${scenario.name} (${mode} mode, ledger ${ledger ? 'on' : 'off'}): nothing lost`, async (t) => {
          assert.ok(cluster !== undefined);
          const report = await runClusterScenario(cluster, {
            name: scenario.name,
            mode,
            ledger,
            count: COUNT,
            plan: scenario.plan,
          });
          reports.push(report);
          assertAccounted(t, `${scenario.name}, ${mode}, ledger ${ledger ? 'on' : 'off'}`, report, ledger);
          assert.ok(
            report.failovers >= scenario.minFailovers,
            `at least ${scenario.minFailovers} failover(s) counted, got ${report.failovers}`,
          );
        });
});
