import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { describe, it } from 'node:test';
import type { ChannelModel } from 'amqplib';
import { ConnectionKeeper } from '../../src/amqp/connection.ts';
import { brokerNodes, type NodeMove, NodeRotation, nodeAddress, startIndex } from '../../src/amqp/nodes.ts';
import { expandHosts } from '../../src/config/broker-urls.ts';
import { createLogger } from '../../src/log.ts';
import { until } from '../support/pipeline.ts';

describe('expandHosts', () => {
  it('gives one URL per host, each with the credentials, vhost and query', () => {
    assert.deepEqual(expandHosts('amqp://u:p%40ss@rabbit-0:5672,rabbit-1,[::1]:5673/vh?heartbeat=5'), [
      'amqp://u:p%40ss@rabbit-0:5672/vh?heartbeat=5',
      'amqp://u:p%40ss@rabbit-1/vh?heartbeat=5',
      'amqp://u:p%40ss@[::1]:5673/vh?heartbeat=5',
    ]);
  });

  it('leaves a single-host URL as it is', () => {
    assert.deepEqual(expandHosts('amqps://u:p@broker:5671/%2F'), ['amqps://u:p@broker:5671/%2F']);
  });

  it('expands a URL without credentials or path', () => {
    assert.deepEqual(expandHosts('amqp://a,b'), ['amqp://a', 'amqp://b']);
  });
});

describe('brokerNodes', () => {
  it('names each node by host and port, the default port included, and never by its credentials', () => {
    assert.equal(nodeAddress('amqp://u:secret@rabbit'), 'rabbit:5672');
    assert.equal(nodeAddress('amqps://u:secret@rabbit/vh'), 'rabbit:5671');
    assert.equal(nodeAddress('amqp://u:secret@127.0.0.1:5673'), '127.0.0.1:5673');
  });

  it('keeps the order and lists a node named twice once', () => {
    const nodes = brokerNodes(['amqp://a:5672', 'amqp://b:5672', 'amqp://u:p@a', 'amqp://c:1']);
    assert.deepEqual(
      nodes.map((n) => n.address),
      ['a:5672', 'b:5672', 'c:1'],
    );
  });
});

describe('startIndex', () => {
  it('is a position in the list, the same every time for one identity', () => {
    for (const count of [1, 2, 3, 7]) {
      for (let i = 0; i < 50; i++) {
        const index = startIndex(`host-${i}/1`, count);
        assert.ok(Number.isInteger(index) && index >= 0 && index < count);
        assert.equal(startIndex(`host-${i}/1`, count), index);
      }
    }
  });

  it('spreads replicas named like pods of a StatefulSet or Deployment over three nodes', () => {
    const perNode = [0, 0, 0];
    for (let i = 0; i < 300; i++) {
      const index = startIndex(`pgq-bridge-${i}/1`, 3);
      perNode[index] = (perNode[index] ?? 0) + 1;
    }
    // 100 each if perfectly even; a hash that ignored the name would put all 300 on one node.
    assert.ok(
      perNode.every((n) => n > 60),
      `replicas per node: ${perNode.join(', ')}`,
    );
  });
});

describe('NodeRotation', () => {
  const nodes = brokerNodes(['amqp://a', 'amqp://b', 'amqp://c']);

  it('starts at the given offset and visits every node in turn, wrapping around', () => {
    const rotation = new NodeRotation(nodes, 4);
    assert.equal(rotation.current.address, 'b:5672');
    const visited = [rotation.current.address];
    for (let i = 0; i < 3; i++) {
      const move = rotation.advance();
      assert.ok(move !== undefined);
      assert.equal(move.from.address, visited[visited.length - 1]);
      visited.push(move.to.address);
    }
    assert.deepEqual(visited, ['b:5672', 'c:5672', 'a:5672', 'b:5672']);
  });

  it('takes a negative offset into the list', () => {
    assert.equal(new NodeRotation(nodes, -1).current.address, 'c:5672');
  });

  it('has nowhere to move with a single node', () => {
    const rotation = new NodeRotation(brokerNodes(['amqp://only']), 0);
    assert.equal(rotation.advance(), undefined);
    assert.equal(rotation.current.address, 'only:5672');
  });

  it('refuses an empty list', () => {
    assert.throws(() => new NodeRotation([], 0), RangeError);
  });
});

/** Just enough of amqplib's ChannelModel for the keeper: events and close(). */
class FakeConnection extends EventEmitter {
  readonly url: string;

  constructor(url: string) {
    super();
    this.url = url;
  }

  async close(): Promise<void> {
    this.emit('close');
  }
}

describe('ConnectionKeeper across cluster nodes', () => {
  it('moves to the next node when one refuses and when a connection is lost, and reports each move', async () => {
    const refusing = new Set(['a:5672']);
    const connections: FakeConnection[] = [];
    const moves: NodeMove[] = [];
    const keeper = new ConnectionKeeper(
      {
        urls: ['amqp://u:p@a', 'amqp://u:p@b', 'amqp://u:p@c'],
        startAt: 0,
        heartbeatSeconds: 2,
        connectionName: 'test',
        reconnectInitialDelayMs: 1,
        reconnectMaxDelayMs: 2,
        connectTimeoutMs: 3000,
      },
      { setup: async () => undefined, onLost: () => undefined, onFailover: (move) => moves.push(move) },
      createLogger('silent'),
      async (url, options) => {
        assert.equal(options.timeout, 3000);
        if (refusing.has(nodeAddress(url))) throw new Error('ECONNREFUSED');
        const connection = new FakeConnection(url);
        connections.push(connection);
        return connection as unknown as ChannelModel;
      },
    );
    keeper.start();
    await keeper.waitUntilConnected();
    assert.equal(keeper.node?.address, 'b:5672');
    assert.equal(connections[0]?.url, 'amqp://u:p@b?heartbeat=2');

    connections[0]?.emit('close', new Error('heartbeat timeout'));
    await until(() => keeper.node?.address === 'c:5672');
    assert.deepEqual(
      moves.map((m) => `${m.from.address}>${m.to.address}`),
      ['a:5672>b:5672', 'b:5672>c:5672'],
    );
    await keeper.close();
    assert.equal(keeper.node, undefined);
  });
});
