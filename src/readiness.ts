import type { BrokerFault } from './amqp/faults.ts';
import type { ProbeVerdict } from './postgrest/probe.ts';

/**
 * Whether the bridge is ready, and the one reason an operator reads first. Ready means every
 * source is consuming and the endpoint has been shown able to take a call (by the probe, or by
 * calls succeeding); anything else names what is wrong, the most basic fault first.
 */

export type ReadyKind =
  | 'ready'
  | 'stopping'
  | 'broker_config'
  | 'broker_unavailable'
  | 'broker_blocked'
  | 'endpoint_pending'
  | 'endpoint_unreachable'
  | 'endpoint_unauthorized'
  | 'function_missing'
  | 'arguments_mismatch'
  | 'endpoint_failing'
  | 'intake_paused'
  | 'internal_error';

export const READY_KINDS: readonly ReadyKind[] = [
  'ready',
  'stopping',
  'broker_config',
  'broker_unavailable',
  'broker_blocked',
  'endpoint_pending',
  'endpoint_unreachable',
  'endpoint_unauthorized',
  'function_missing',
  'arguments_mismatch',
  'endpoint_failing',
  'intake_paused',
  'internal_error',
];

export interface ReadinessFacts {
  readonly stopping: boolean;
  readonly consuming: boolean;
  /** Intake is paused on purpose (endpoint failing, too many bytes held): not consuming is expected. */
  readonly intakePaused: boolean;
  /** What keeps a broker connection or a source down, by scope. */
  readonly brokerFaults: readonly BrokerFault[];
  readonly brokerBlocked: boolean;
  /** The endpoint probe's last verdict; undefined before its first answer. */
  readonly endpoint: ProbeVerdict | undefined;
  /** The circuit is open: calls fail, intake is paused. */
  readonly endpointFailing: string | undefined;
  readonly internalErrors: boolean;
}

export interface Readiness {
  readonly ready: boolean;
  readonly kind: ReadyKind;
  readonly reason: string;
}

export function readiness(facts: ReadinessFacts): Readiness {
  const not = (kind: ReadyKind, reason: string): Readiness => ({ ready: false, kind, reason });
  if (facts.stopping) return not('stopping', 'shutting down');
  const config = facts.brokerFaults.find((fault) => fault.config);
  if (config !== undefined) return not('broker_config', `${config.key}: ${config.message}`);
  if (!facts.consuming && (!facts.intakePaused || facts.brokerFaults.length > 0)) {
    const [fault] = facts.brokerFaults;
    return not('broker_unavailable', fault?.message ?? 'connecting to the broker');
  }
  if (facts.brokerBlocked)
    return not('broker_blocked', 'the broker blocks publishing (memory or disk alarm)');
  const { endpoint } = facts;
  if (endpoint === undefined) return not('endpoint_pending', 'checking the RPC endpoint');
  if (!endpoint.ok) {
    const kind =
      endpoint.kind === 'unreachable'
        ? 'endpoint_unreachable'
        : endpoint.kind === 'unauthorized'
          ? 'endpoint_unauthorized'
          : endpoint.kind;
    return not(kind, endpoint.key === undefined ? endpoint.reason : `${endpoint.key}: ${endpoint.reason}`);
  }
  if (facts.endpointFailing !== undefined) {
    return not(
      'endpoint_failing',
      `the RPC endpoint is failing (${facts.endpointFailing}); intake paused, probing`,
    );
  }
  if (!facts.consuming) return not('intake_paused', 'intake paused: the in-flight byte limit is reached');
  if (facts.internalErrors)
    return not(
      'internal_error',
      'an unexpected error in the delivery path; ready again after a call succeeds',
    );
  return { ready: true, kind: 'ready', reason: `consuming; ${endpoint.reason}` };
}
