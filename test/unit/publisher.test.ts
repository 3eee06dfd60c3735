import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { describe, it } from 'node:test';
import type { ChannelModel } from 'amqplib';
import { pino } from 'pino';
import { ConfirmPublisher, PUBLISH_ID_HEADER } from '../../src/amqp/publisher.ts';
import { connectionSettings, until } from '../support/pipeline.ts';

/**
 * What counts as published: routed and confirmed, within a deadline. The broker is a confirm
 * channel the test drives: it confirms, nacks, returns, stays silent, or blocks the connection.
 */

type Behaviour = 'confirm' | 'nack' | 'return' | 'silent' | 'too_large';

class ScriptedConfirmChannel extends EventEmitter {
  behaviour: Behaviour = 'confirm';
  published = 0;

  publish(
    _exchange: string,
    routingKey: string,
    content: Buffer,
    options: { headers?: Record<string, unknown>; mandatory?: boolean },
    callback: (error: unknown) => void,
  ): boolean {
    if (this.behaviour === 'too_large') throw new RangeError('offset is out of bounds');
    this.published++;
    assert.equal(options.mandatory, true, 'every publish is mandatory');
    const behaviour = this.behaviour;
    setImmediate(() => {
      if (behaviour === 'silent') return;
      if (behaviour === 'return') {
        this.emit('return', { content, fields: { routingKey }, properties: { headers: options.headers } });
      }
      callback(behaviour === 'nack' ? new Error('nacked') : null);
    });
    return true;
  }
}

function setup(confirmTimeoutMs = 50) {
  const channel = new ScriptedConfirmChannel();
  const connection: EventEmitter & { close: () => Promise<void> } = Object.assign(new EventEmitter(), {
    createConfirmChannel: async () => channel,
    close: async () => {
      connection.emit('close');
    },
  });
  const blockedEvents: boolean[] = [];
  const publisher = new ConfirmPublisher(
    { ...connectionSettings(), confirmTimeoutMs },
    pino({ level: 'silent' }),
    async () => connection as unknown as ChannelModel,
    { onBlocked: (blocked) => blockedEvents.push(blocked) },
  );
  publisher.start();
  return { publisher, channel, connection, blockedEvents };
}

const body = Buffer.from('{}');

describe('ConfirmPublisher', () => {
  it('is ok only when the broker routed and confirmed the message', async () => {
    const { publisher, channel } = setup();
    await until(() => publisher.ready);
    assert.deepEqual(await publisher.publish('q', body, {}), { ok: true });
    channel.behaviour = 'return';
    const returned = await publisher.publish('gone', body, { headers: { a: 1 } });
    assert.equal(returned.ok, false);
    assert.equal(!returned.ok && returned.kind, 'returned');
    channel.behaviour = 'nack';
    const nacked = await publisher.publish('q', body, {});
    assert.equal(!nacked.ok && nacked.kind, 'nacked');
    await publisher.close();
  });

  it('gives up waiting for a confirm after confirmTimeoutMs', async () => {
    const { publisher, channel } = setup(30);
    await until(() => publisher.ready);
    channel.behaviour = 'silent';
    const result = await publisher.publish('q', body, {});
    assert.equal(!result.ok && result.kind, 'timeout');
    await publisher.close();
  });

  it('fails fast while the broker blocks the connection, and says so', async () => {
    const { publisher, channel, connection, blockedEvents } = setup();
    await until(() => publisher.ready);
    connection.emit('blocked', 'low on memory');
    assert.equal(publisher.blocked, true);
    const result = await publisher.publish('q', body, {});
    assert.equal(!result.ok && result.kind, 'blocked');
    assert.equal(channel.published, 0, 'nothing sits in a socket buffer');
    connection.emit('unblocked');
    assert.equal(publisher.blocked, false);
    assert.deepEqual(await publisher.publish('q', body, {}), { ok: true });
    assert.deepEqual(blockedEvents, [true, false]);
    await publisher.close();
  });

  it('reports a header table past the frame limit as too_large instead of throwing', async () => {
    const { publisher, channel } = setup();
    await until(() => publisher.ready);
    channel.behaviour = 'too_large';
    const result = await publisher.publish('q', body, {});
    assert.equal(!result.ok && result.kind, 'too_large');
    await publisher.close();
  });

  it('ties a return to its own publish only', async () => {
    const { publisher, channel } = setup();
    await until(() => publisher.ready);
    const results = await Promise.all([
      publisher.publish('q', body, {}),
      (() => {
        channel.behaviour = 'return';
        const p = publisher.publish('gone', body, {});
        channel.behaviour = 'confirm';
        return p;
      })(),
      publisher.publish('q', body, {}),
    ]);
    assert.deepEqual(
      results.map((r) => (r.ok ? 'ok' : r.kind)),
      ['ok', 'returned', 'ok'],
    );
    assert.ok(PUBLISH_ID_HEADER.startsWith('x-pgq-bridge-'));
    await publisher.close();
  });
});
