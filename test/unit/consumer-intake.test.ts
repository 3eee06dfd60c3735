import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { describe, it } from 'node:test';
import type { ChannelModel } from 'amqplib';
import { pino } from 'pino';
import { AmqpConsumer } from '../../src/amqp/consumer.ts';
import { connectionSettings, testConfig, until } from '../support/pipeline.ts';

/**
 * Intake changes against a channel whose basic.consume answers only when the test says so:
 * a pause that arrives while a resume is pending must win, and a source never has two consumers.
 */

class SlowChannel extends EventEmitter {
  readonly consumers = new Set<string>();
  mostConsumers = 0;
  readonly pendingConsumes: (() => void)[] = [];
  #next = 0;

  async prefetch(): Promise<void> {}
  async assertQueue(): Promise<void> {}
  async checkQueue(): Promise<void> {}
  consume(): Promise<{ consumerTag: string }> {
    return new Promise((resolve) => {
      this.pendingConsumes.push(() => {
        const consumerTag = `ctag-${++this.#next}`;
        this.consumers.add(consumerTag);
        this.mostConsumers = Math.max(this.mostConsumers, this.consumers.size);
        resolve({ consumerTag });
      });
    });
  }
  async cancel(tag: string): Promise<void> {
    assert.ok(this.consumers.delete(tag), `cancel of an unknown consumer ${tag}`);
  }
  async close(): Promise<void> {
    this.emit('close');
  }
  answerConsume(): void {
    const answer = this.pendingConsumes.shift();
    assert.ok(answer, 'no basic.consume pending');
    answer();
  }
}

function setup() {
  const config = testConfig({ sources: [{ queue: 'a' }] });
  const channel = new SlowChannel();
  const connection: EventEmitter & { createChannel: () => Promise<SlowChannel>; close: () => Promise<void> } =
    Object.assign(new EventEmitter(), {
      createChannel: async () => channel,
      close: async () => {
        connection.emit('close');
      },
    });
  const consumer = new AmqpConsumer(
    connectionSettings(),
    config.sources,
    { onDelivery: () => assert.fail('no deliveries here') },
    pino({ level: 'silent' }),
    { connect: async () => connection as unknown as ChannelModel },
  );
  return { consumer, channel };
}

describe('Consumer intake changes', () => {
  it('cancels the consumer a pending resume made when a pause came meanwhile', async () => {
    const { consumer, channel } = setup();
    consumer.start();
    await until(() => channel.pendingConsumes.length === 1);
    const paused = consumer.setPaused('circuit', true);
    channel.answerConsume();
    await paused;
    assert.equal(channel.consumers.size, 0, 'no consumer runs while paused');
    assert.equal(consumer.paused, true);
    await consumer.close(1_000);
  });

  it('never registers a second consumer when resumes overlap a pending consume', async () => {
    const { consumer, channel } = setup();
    consumer.start();
    await until(() => channel.pendingConsumes.length === 1);
    const changes = [
      consumer.setPaused('circuit', true),
      consumer.setPaused('circuit', false),
      consumer.setPaused('memory', true),
      consumer.setPaused('memory', false),
    ];
    channel.answerConsume();
    await until(() => channel.pendingConsumes.length > 0 || channel.consumers.size === 1);
    while (channel.pendingConsumes.length > 0) channel.answerConsume();
    await Promise.all(changes);
    assert.equal(channel.consumers.size, 1);
    assert.equal(channel.mostConsumers, 1, 'never two at once');
    assert.equal(consumer.consuming, true);
    await consumer.close(1_000);
  });

  it('resumes only when every reason to pause is gone', async () => {
    const { consumer, channel } = setup();
    consumer.start();
    await until(() => channel.pendingConsumes.length === 1);
    channel.answerConsume();
    await until(() => consumer.consuming);
    await consumer.setPaused('circuit', true);
    await consumer.setPaused('memory', true);
    const resumed = consumer.setPaused('circuit', false);
    await resumed;
    assert.equal(channel.consumers.size, 0, 'memory still holds it');
    assert.deepEqual(consumer.pausedFor, ['memory']);
    const last = consumer.setPaused('memory', false);
    await until(() => channel.pendingConsumes.length === 1);
    channel.answerConsume();
    await last;
    assert.equal(channel.consumers.size, 1);
    await consumer.close(1_000);
  });
});
