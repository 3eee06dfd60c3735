/**
 * Messages for fault-injection scenarios and the exact accounting that ends each one: every
 * published message must be a job row or a dead letter, no valid message may be dead-lettered,
 * and a message may have become two jobs only if it had no dedupe key.
 *
 * Each message carries its id as the AMQP message-id and inside the job's headers (`mid`), so
 * rows and dead letters map back to what was published.
 */

export type ScenarioKind = 'no_key' | 'unique_key' | 'shared_key' | 'invalid';

export interface ScenarioMessage {
  readonly id: string;
  readonly kind: ScenarioKind;
  readonly dedupeKey?: string;
  readonly body: Buffer;
}

const INVALID_BODIES: ReadonlyArray<(id: string) => string> = [
  (id) => JSON.stringify({ entrypoint: 'scenario', priority: 'high', headers: { mid: id } }),
  (id) => JSON.stringify({ entrypoint: 'scenario', priorty: 1, headers: { mid: id } }),
  (id) => JSON.stringify({ entrypoint: 'scenario', payload: 'not base64!', headers: { mid: id } }),
  (id) => JSON.stringify({ entrypoint: 'scenario', headers: [id] }),
  (id) => `{"entrypoint": "scenario", "headers": {"mid": "${id}"}`,
  // Valid to the bridge, refused by PostgreSQL: exercises the rejected_by_rpc path under faults.
  (id) => JSON.stringify({ entrypoint: 'scenario', execute_after: 'ten seconds', headers: { mid: id } }),
];

export function scenarioMessages(count: number, prefix: string): ScenarioMessage[] {
  const messages: ScenarioMessage[] = [];
  for (let i = 0; i < count; i++) {
    const id = `${prefix}-${i}`;
    const slot = i % 20;
    let kind: ScenarioKind;
    let dedupeKey: string | undefined;
    if (slot === 7 || slot === 17) {
      const body = INVALID_BODIES[Math.floor(i / 10) % INVALID_BODIES.length]?.(id) ?? '';
      messages.push({ id, kind: 'invalid', body: Buffer.from(body) });
      continue;
    }
    if (slot === 3 || slot === 4) {
      // Two different messages with one dedupe key: exactly one of them becomes the job.
      kind = 'shared_key';
      dedupeKey = `${prefix}-shared-${i - (slot - 3)}`;
    } else if (slot % 3 === 0) {
      kind = 'unique_key';
      dedupeKey = `${prefix}-key-${i}`;
    } else {
      kind = 'no_key';
    }
    const envelope: Record<string, unknown> = {
      entrypoint: 'scenario',
      payload: { mid: id, n: i },
      priority: i % 7,
      headers: { mid: id },
    };
    if (dedupeKey !== undefined) envelope.dedupe_key = dedupeKey;
    messages.push({
      id,
      kind,
      ...(dedupeKey === undefined ? {} : { dedupeKey }),
      body: Buffer.from(JSON.stringify(envelope)),
    });
  }
  return messages;
}

export interface JobCount {
  readonly mid: string;
  readonly count: number;
}

export interface Accounting {
  readonly published: number;
  readonly jobRows: number;
  readonly deadLetters: number;
  /** Job rows beyond the first for one message (allowed only without a dedupe key). */
  readonly duplicateJobs: number;
  /** Dead letters beyond the first for one message (an ack lost after the confirm). */
  readonly duplicateDeadLetters: number;
  /** Messages that are neither a job nor a dead letter. */
  readonly missing: readonly string[];
  readonly validDeadLettered: readonly string[];
  readonly duplicatedWithKey: readonly string[];
  /** Shared-key pairs that did not end as exactly one job. */
  readonly sharedKeyViolations: readonly string[];
  readonly unknownRows: readonly string[];
}

export function account(
  messages: readonly ScenarioMessage[],
  jobs: readonly JobCount[],
  deadLetterIds: readonly string[],
): Accounting {
  const jobCount = new Map(jobs.map((j) => [j.mid, j.count]));
  const deadCount = new Map<string, number>();
  for (const id of deadLetterIds) deadCount.set(id, (deadCount.get(id) ?? 0) + 1);
  const byId = new Map(messages.map((m) => [m.id, m]));

  const missing: string[] = [];
  const validDeadLettered: string[] = [];
  const duplicatedWithKey: string[] = [];
  const sharedKeyViolations: string[] = [];
  const sharedGroups = new Map<string, ScenarioMessage[]>();
  let duplicateJobs = 0;

  for (const message of messages) {
    const rows = jobCount.get(message.id) ?? 0;
    const dead = deadCount.get(message.id) ?? 0;
    if (rows > 1) {
      duplicateJobs += rows - 1;
      if (message.dedupeKey !== undefined) duplicatedWithKey.push(message.id);
    }
    if (message.kind === 'invalid') {
      if (dead === 0) missing.push(message.id);
      continue;
    }
    if (dead > 0) validDeadLettered.push(message.id);
    if (message.kind === 'shared_key' && message.dedupeKey !== undefined) {
      const group = sharedGroups.get(message.dedupeKey) ?? [];
      group.push(message);
      sharedGroups.set(message.dedupeKey, group);
      continue;
    }
    if (rows === 0) missing.push(message.id);
  }
  for (const [key, group] of sharedGroups) {
    const rows = group.reduce((sum, m) => sum + (jobCount.get(m.id) ?? 0), 0);
    if (rows !== 1) sharedKeyViolations.push(`${key}: ${rows} jobs`);
  }
  const duplicateDeadLetters = [...deadCount.values()].reduce((sum, n) => sum + Math.max(0, n - 1), 0);
  return {
    published: messages.length,
    jobRows: jobs.reduce((sum, j) => sum + j.count, 0),
    deadLetters: deadLetterIds.length,
    duplicateJobs,
    duplicateDeadLetters,
    missing,
    validDeadLettered,
    duplicatedWithKey,
    sharedKeyViolations,
    unknownRows: jobs.filter((j) => !byId.has(j.mid)).map((j) => j.mid),
  };
}
