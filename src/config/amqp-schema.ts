import { z } from 'zod';
import { delayMs } from './kinds.ts';

/** The `amqp` section: the broker's URLs (one per node, or one multi-host URL), timing and TLS. */

const amqpUrl = z.string().regex(/^amqps?:\/\/[^\s]+$/, 'must be an amqp:// or amqps:// URL');

export const amqpSchema = z
  .strictObject({
    url: amqpUrl
      .optional()
      .describe(
        'Broker URL, credentials included; a cluster as one URL with several hosts (amqp://u:p@rabbit-0,rabbit-1:5672,rabbit-2/vhost). Secret. Env: PGQ_BRIDGE_AMQP_URL.',
      ),
    urls: z
      .array(amqpUrl)
      .min(1)
      .optional()
      .describe(
        'Instead of `url`: one URL per cluster node. Each replica starts at its own node and moves to the next when one fails or refuses. Secret. Env: PGQ_BRIDGE_AMQP_URLS (separated by spaces or commas).',
      ),
    heartbeatSeconds: z
      .number()
      .int()
      .min(0)
      .max(600)
      .default(20)
      .describe('AMQP heartbeat; a dead broker is noticed after two silent intervals. 0 disables.'),
    connectionName: z
      .string()
      .default('pgq-bridge')
      .describe('Shown in the RabbitMQ management UI and `rabbitmqctl list_connections`.'),
    reconnectInitialDelayMs: delayMs('First reconnect delay; doubles per failed attempt, with jitter.', 500),
    reconnectMaxDelayMs: delayMs('Upper bound of the reconnect delay.', 30_000),
    connectTimeoutMs: delayMs(
      'Deadline of one connection attempt (TCP, TLS, AMQP handshake, setup) and of closing; then it is abandoned and the next node is tried (a node behind a dropped route never refuses).',
      10_000,
    ),
    confirmTimeoutMs: z
      .number()
      .int()
      .min(100)
      .default(15_000)
      .describe(
        'Longest wait for the broker to confirm a dead letter or reply (a blocked broker never confirms); then it is retried.',
      ),
    tls: z
      .strictObject({
        caFile: z
          .string()
          .min(1)
          .optional()
          .describe('PEM file of the CA that signed the broker certificate.'),
        certFile: z.string().min(1).optional().describe('PEM client certificate (for mutual TLS).'),
        keyFile: z.string().min(1).optional().describe('PEM private key of the client certificate.'),
        passphrase: z
          .string()
          .optional()
          .describe('Passphrase of the key. Secret. Env: PGQ_BRIDGE_AMQP_TLS_PASSPHRASE.'),
        servername: z
          .string()
          .min(1)
          .optional()
          .describe('TLS server name (SNI) when it differs from the host.'),
      })
      .optional()
      .describe('TLS for amqps:// URLs.'),
  })
  .superRefine((amqp, ctx) => {
    if ((amqp.url === undefined) === (amqp.urls === undefined)) {
      ctx.addIssue({
        code: 'custom',
        path: ['url'],
        message: amqp.url === undefined ? 'url or urls is required' : 'choose one of url, urls',
      });
    }
  })
  .describe('RabbitMQ connection.');
