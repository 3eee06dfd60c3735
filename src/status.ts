import type { AmqpConsumer } from './amqp/consumer.ts';
import type { ConfirmPublisher } from './amqp/publisher.ts';
import type { BrokerFaults } from './broker-faults.ts';
import type { Pipeline } from './pipeline/pipeline.ts';
import type { EndpointWatch } from './postgrest/watch.ts';
import { type Readiness, readiness } from './readiness.ts';
import type { Circuit } from './resilience/circuit.ts';

/**
 * Gathers the readiness facts and the status document (GET /readyz, the ready / not ready log
 * lines) from the running parts, so the composition root only wires them.
 */

export interface StatusParts {
  readonly consumer: Pick<AmqpConsumer, 'consuming' | 'paused' | 'pausedFor' | 'node'>;
  readonly publisher: Pick<ConfirmPublisher, 'blocked' | 'ready' | 'node'>;
  readonly watch: Pick<EndpointWatch, 'verdict'>;
  readonly circuit: Pick<Circuit, 'isOpen'>;
  readonly pipeline: Pick<Pipeline, 'faulty' | 'active'>;
  readonly brokerFaults: BrokerFaults;
  readonly stopping: boolean;
}

export function currentReadiness(parts: StatusParts): Readiness {
  return readiness({
    stopping: parts.stopping,
    consuming: parts.consumer.consuming,
    intakePaused: parts.consumer.paused,
    brokerFaults: parts.brokerFaults.all,
    brokerBlocked: parts.publisher.blocked,
    endpoint: parts.watch.verdict,
    endpointFailing: parts.circuit.isOpen ? 'calls fail' : undefined,
    internalErrors: parts.pipeline.faulty,
  });
}

export function statusReport(parts: StatusParts): Record<string, unknown> {
  const { reason } = currentReadiness(parts);
  const { consumer, publisher, pipeline } = parts;
  const endpoint = parts.watch.verdict;
  return {
    reason,
    endpointReady: endpoint?.ok === true,
    endpointVerified: endpoint?.ok === true && endpoint.verified,
    consuming: consumer.consuming,
    brokerNode: consumer.node?.address ?? null,
    deadLetterPublisherNode: publisher.node?.address ?? null,
    endpointFailing: parts.circuit.isOpen,
    intakePaused: consumer.paused,
    intakePausedFor: consumer.pausedFor,
    deadLetterPublisherConnected: publisher.ready,
    brokerBlocked: publisher.blocked,
    internalErrors: pipeline.faulty,
    inFlight: pipeline.active,
    stopping: parts.stopping,
  };
}
