import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import type { ChannelModel } from 'amqplib';
import amqp from 'amqplib';
import {
  amqpUrl,
  deleteQueues,
  drainQueue,
  parseQueueList,
  publish,
  queueCounts,
  TestBroker,
  uniqueName,
  waitFor,
  withBroker,
} from '../support/rabbit.ts';
import {
  epmdNames,
  isPortOpen,
  type PrivateNode,
  PrivateNodeStartError,
  processesForNode,
  startPrivateNode,
} from '../support/rabbit-node.ts';

/** Resolves with the connection's 'close' argument, or rejects if it does not come in time. */
function closeEvent(connection: ChannelModel, timeoutMs: number): Promise<Error | undefined> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no 'close' within ${timeoutMs} ms`)), timeoutMs);
    connection.once('close', (error?: Error) => {
      clearTimeout(timer);
      resolve(error);
    });
  });
}

describe('helpers against the shared broker', () => {
  let broker: TestBroker;
  const queues: string[] = [];

  before(async () => {
    broker = await TestBroker.connect(amqpUrl());
  });

  after(async () => {
    await broker?.deleteQueues(...queues);
    await broker?.close();
  });

  async function freshQueue(prefix: string): Promise<string> {
    const queue = uniqueName(prefix);
    queues.push(queue);
    await (await broker.channel()).assertQueue(queue, { durable: true });
    return queue;
  }

  test('uniqueName gives distinct names that are safe as queue names', () => {
    const names = new Set(Array.from({ length: 1000 }, () => uniqueName('pgqb test/ü')));
    assert.equal(names.size, 1000);
    for (const name of names) assert.match(name, /^pgqb_test__-[0-9a-z]+-[0-9a-f]{8}$/);
  });

  test('publishes 10,000 messages with confirms and sees them in live counts', async (t) => {
    const queue = await freshQueue('pgqb-support-bulk');
    const messages = Array.from({ length: 10_000 }, (_, i) => ({
      body: JSON.stringify({ i, pad: 'x'.repeat(200) }),
      options: { persistent: true, messageId: `bulk-${i}`, headers: { seq: i } },
    }));

    const publishStarted = Date.now();
    await broker.publish(queue, messages);
    const publishMs = Date.now() - publishStarted;
    t.diagnostic(`published 10,000 confirmed messages in ${publishMs} ms`);
    assert.ok(publishMs < 20_000, `publishing took ${publishMs} ms`);

    assert.deepEqual(await queueCounts(queue), { ready: 10_000, unacked: 0, consumers: 0 });

    const drainStarted = Date.now();
    const drained = await broker.drainQueue(queue);
    t.diagnostic(`drained 10,000 messages in ${Date.now() - drainStarted} ms`);
    assert.equal(drained.length, 10_000);
    drained.forEach((message, i) => {
      assert.equal(message.properties.messageId, `bulk-${i}`);
      assert.equal(message.properties.headers?.seq, i);
    });
    assert.deepEqual(await queueCounts(queue), { ready: 0, unacked: 0, consumers: 0 });
  });

  test('drainQueue returns content, properties and fields intact, in queue order', async () => {
    const queue = await freshQueue('pgqb-support-props');
    const binary = Buffer.from([0, 1, 2, 253, 254, 255]);
    await publish(amqpUrl(), queue, [
      {
        body: '{"entrypoint":"a"}',
        options: {
          persistent: true,
          contentType: 'application/json',
          contentEncoding: 'utf-8',
          messageId: 'm-1',
          correlationId: 'c-1',
          type: 'job',
          appId: 'tests',
          timestamp: 1_700_000_000,
          priority: 3,
          headers: {
            traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
            attempt: 2,
            nested: { list: [1, 'two'] },
          },
        },
      },
      { body: binary, options: { messageId: 'm-2' } },
    ]);

    const [first, second, ...rest] = await drainQueue(queue);
    assert.deepEqual(rest, []);
    assert.ok(first && second);
    assert.equal(first.content.toString('utf8'), '{"entrypoint":"a"}');
    assert.deepEqual(
      {
        deliveryMode: first.properties.deliveryMode,
        contentType: first.properties.contentType,
        contentEncoding: first.properties.contentEncoding,
        messageId: first.properties.messageId,
        correlationId: first.properties.correlationId,
        type: first.properties.type,
        appId: first.properties.appId,
        timestamp: first.properties.timestamp,
        priority: first.properties.priority,
      },
      {
        deliveryMode: 2,
        contentType: 'application/json',
        contentEncoding: 'utf-8',
        messageId: 'm-1',
        correlationId: 'c-1',
        type: 'job',
        appId: 'tests',
        timestamp: 1_700_000_000,
        priority: 3,
      },
    );
    assert.deepEqual(first.properties.headers, {
      traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
      attempt: 2,
      nested: { list: [1, 'two'] },
    });
    assert.equal(first.fields.routingKey, queue);
    assert.equal(first.fields.exchange, '');
    assert.equal(first.fields.redelivered, false);
    assert.deepEqual(second.content, binary);
    assert.equal(second.properties.messageId, 'm-2');
    assert.deepEqual(await queueCounts(queue), { ready: 0, unacked: 0, consumers: 0 });
  });

  test('publish rejects messages the default exchange cannot route', async () => {
    const missing = uniqueName('pgqb-support-missing');
    await assert.rejects(
      broker.publish(missing, [{ body: 'lost' }]),
      /1 of 1 message\(s\) to .* were unroutable/,
    );
    await broker.publish(missing, [{ body: 'dropped on purpose' }], { mandatory: false });
  });

  test('the broker reopens its channel after the server closed it', async () => {
    await assert.rejects(broker.drainQueue(uniqueName('pgqb-support-missing')), /404/);
    const queue = await freshQueue('pgqb-support-reopen');
    await broker.publish(queue, [{ body: 'after 404' }]);
    assert.equal((await broker.drainQueue(queue)).length, 1);
  });

  test('queueCounts names a missing queue; deleteQueues ignores one', async () => {
    const missing = uniqueName('pgqb-support-missing');
    await assert.rejects(queueCounts(missing), new RegExp(`queue ${missing} not found`));
    await deleteQueues(missing);
    await broker.deleteQueues(missing, missing);

    const queue = uniqueName('pgqb-support-delete');
    await withBroker(amqpUrl(), async (b) => {
      await (await b.channel()).assertQueue(queue);
    });
    await deleteQueues(queue);
    await assert.rejects(queueCounts(queue), /not found/);
  });

  test('parseQueueList reads rabbitmqctl rows and skips anything that is not one', () => {
    const parsed = parseQueueList(
      'name\tmessages_ready\tmessages_unacknowledged\tconsumers\n' +
        'orders\t12\t3\t1\n' +
        'odd\tname\t0\t0\t0\n' +
        'down-queue\t\t\t\n' +
        '\n',
    );
    assert.deepEqual(
      [...parsed],
      [
        ['orders', { ready: 12, unacked: 3, consumers: 1 }],
        ['odd\tname', { ready: 0, unacked: 0, consumers: 0 }],
      ],
    );
  });

  test('waitFor returns the first truthy value and fails clearly on timeout', async () => {
    let calls = 0;
    assert.equal(
      await waitFor(() => (++calls >= 3 ? `done after ${calls}` : false), { intervalMs: 1 }),
      'done after 3',
    );

    const started = Date.now();
    await assert.rejects(
      waitFor(() => 0, { timeoutMs: 100, intervalMs: 10, message: 'the answer' }),
      /^Error: the answer not met within 100 ms \(last value: 0\)$/,
    );
    assert.ok(Date.now() - started < 1_000);

    await assert.rejects(
      waitFor(
        () => {
          throw new Error('broker down');
        },
        { timeoutMs: 50, intervalMs: 10 },
      ),
      (error: Error) => /last error: broker down/.test(error.message) && error.cause instanceof Error,
    );

    const fatal = new Error('fatal');
    await assert.rejects(
      waitFor(
        () => {
          throw fatal;
        },
        { timeoutMs: 10_000, stopOn: (error) => error === fatal },
      ),
      (error) => error === fatal,
    );
  });
});

describe('private RabbitMQ nodes', { timeout: 240_000 }, () => {
  let a: PrivateNode | undefined;
  let b: PrivateNode | undefined;
  const connections: ChannelModel[] = [];

  async function connect(url: string): Promise<ChannelModel> {
    const connection = await amqp.connect(url);
    connection.on('error', () => {});
    connections.push(connection);
    return connection;
  }

  before(async () => {
    // Two at once, as two test files running concurrently would start them.
    const [first, second] = await Promise.allSettled([
      startPrivateNode({ consumerTimeoutMs: 5_000, channelTickMs: 1_000 }),
      startPrivateNode(),
    ]);
    if (first.status === 'fulfilled') a = first.value;
    if (second.status === 'fulfilled') b = second.value;
    if (first.status === 'rejected') throw first.reason;
    if (second.status === 'rejected') throw second.reason;
  });

  after(async () => {
    for (const connection of connections) await connection.close().catch(() => {});
    await Promise.all([a?.stop(), b?.stop()]);
  });

  function nodes(): [PrivateNode, PrivateNode] {
    assert.ok(a && b, 'both nodes started');
    return [a, b];
  }

  test('two nodes run side by side with their own names, ports, config and data', async (t) => {
    const [one, two] = nodes();
    t.diagnostic(`started concurrently in ${one.startupMs} ms and ${two.startupMs} ms`);
    assert.notEqual(one.nodeName, two.nodeName);
    assert.notEqual(one.amqpPort, two.amqpPort);
    assert.notEqual(one.distPort, two.distPort);
    assert.ok(![one.amqpPort, two.amqpPort].includes(5672));
    assert.equal(one.url, `amqp://guest:guest@127.0.0.1:${one.amqpPort}`);

    const registered = await epmdNames();
    assert.equal(registered.get(one.nodeName.split('@')[0] ?? ''), one.distPort);
    assert.equal(registered.get(two.nodeName.split('@')[0] ?? ''), two.distPort);

    const env =
      '{application:get_env(rabbit, consumer_timeout), application:get_env(rabbit, channel_tick_interval)}.';
    assert.equal((await one.rabbitmqctl(['eval', env])).trim(), '{{ok,5000},{ok,1000}}');
    assert.equal((await two.rabbitmqctl(['eval', env])).trim(), '{{ok,1800000},{ok,60000}}');

    const queue = uniqueName('pgqb-support-private');
    await withBroker(one.url, async (broker) => {
      await (await broker.channel()).assertQueue(queue, { durable: false });
      await broker.publish(queue, [{ body: 'only on one' }]);
    });
    assert.deepEqual((await one.listQueues()).get(queue), { ready: 1, unacked: 0, consumers: 0 });
    assert.deepEqual(await queueCounts(queue, { node: one.nodeName }), {
      ready: 1,
      unacked: 0,
      consumers: 0,
    });
    assert.equal((await two.listQueues()).has(queue), false);
    await assert.rejects(queueCounts(queue), /not found on the shared broker/);
  });

  test('closeAllConnections makes an amqplib connection emit close with 320', async () => {
    const [one] = nodes();
    const connection = await connect(one.url);
    const closed = closeEvent(connection, 10_000);
    await one.closeAllConnections('support test forced close');
    const error = await closed;
    assert.match(String(error?.message), /320/);
    assert.match(String(error?.message), /CONNECTION_FORCED - support test forced close/);

    const again = await connect(one.url);
    await (await again.createChannel()).close();
  });

  test('stopApp/startApp keeps a durable queue and its persistent messages', async () => {
    const [one] = nodes();
    const queue = uniqueName('pgqb-support-restart');
    const broker = await TestBroker.connect(one.url);
    try {
      await (await broker.channel()).assertQueue(queue, { durable: true });
      await broker.publish(queue, [
        ...Array.from({ length: 5 }, (_, i) => ({
          body: `persistent ${i}`,
          options: { persistent: true, messageId: `p-${i}` },
        })),
        ...Array.from({ length: 3 }, (_, i) => ({ body: `transient ${i}`, options: { persistent: false } })),
      ]);
      assert.deepEqual(await queueCounts(queue, { node: one.nodeName }), {
        ready: 8,
        unacked: 0,
        consumers: 0,
      });

      const watcher = await connect(one.url);
      const closed = closeEvent(watcher, 30_000);
      await one.stopApp();
      await closed;
      assert.equal(await isPortOpen(one.amqpPort), false);
      await waitFor(() => broker.connection === undefined, { message: 'the broker connection to drop' });
      await assert.rejects(broker.channel(), /ECONNREFUSED/);

      await one.startApp();
      // Transient messages do not survive a restart, which shows the broker really went down.
      assert.deepEqual(await queueCounts(queue, { node: one.nodeName }), {
        ready: 5,
        unacked: 0,
        consumers: 0,
      });
      const survivors = await broker.drainQueue(queue);
      assert.deepEqual(
        survivors.map((m) => [m.properties.messageId, m.content.toString()]),
        Array.from({ length: 5 }, (_, i) => [`p-${i}`, `persistent ${i}`]),
      );
      await broker.deleteQueues(queue);
    } finally {
      await broker.close();
    }
  });

  test('stop() leaves no process, port, epmd entry or directory behind', async (t) => {
    const [, two] = nodes();
    assert.ok((await processesForNode(two.nodeName)).includes(two.pid));
    const started = Date.now();
    await two.stop();
    t.diagnostic(`stopped in ${Date.now() - started} ms`);
    assert.equal(await isPortOpen(two.amqpPort), false);
    assert.deepEqual(await processesForNode(two.nodeName), []);
    assert.equal((await epmdNames()).has(two.nodeName.split('@')[0] ?? ''), false);
    assert.equal(existsSync(two.dir), false);
    await two.stop();

    const [one] = nodes();
    await (await connect(one.url)).close();
  });

  test('a node that cannot boot fails fast with the reason and leaves nothing behind', async () => {
    const [one] = nodes();
    const started = Date.now();
    const error = await startPrivateNode({ distPort: one.distPort }).then(
      () => assert.fail('a second node on the same distribution port started'),
      (e: unknown) => e,
    );
    assert.ok(error instanceof PrivateNodeStartError);
    assert.match(error.message, /dist_port_already_used/);
    assert.equal(error.portInUse, true);
    assert.ok(Date.now() - started < 30_000, `took ${Date.now() - started} ms to fail`);
    const failedNode = /node (\S+@localhost) failed to start/.exec(error.message)?.[1];
    assert.ok(failedNode);
    assert.deepEqual(await processesForNode(failedNode), []);
    assert.equal((await epmdNames()).has(failedNode.split('@')[0] ?? ''), false);
  });
});
