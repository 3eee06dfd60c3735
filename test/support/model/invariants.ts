import type { RunResult } from './run.ts';
import { TIMEOUTS } from './scenario.ts';

/**
 * The delivery guarantee, checked against what the simulated broker and endpoint saw. Returns
 * every broken rule (empty when the run kept them all).
 *
 * I1  a delivery is acked only if its job exists, its dedupe key's job exists, or its dead
 *     letter was routed and confirmed, each before the ack
 * I2  each delivery is settled at most once, on its own channel (checked by the broker as it goes)
 * I3  every delivery is settled or returned to the broker within maxHoldMs plus a bounded margin
 * I4  no consumer runs while intake is paused, never two per source (checked as it goes)
 * I5  jobs per message ≤ 1 + its ambiguous sends (answers lost after the call went out, or
 *     deliveries the broker took back), and ambiguous sends stay within the faults injected
 * I6  endpoint faults are never dead-lettered; every dead letter has a cause of its own
 * P   once the endpoint and broker are healthy, every message is acked
 */

/** After a job id comes back the ack may wait for the reply's confirm and the ack hold. */
const ACK_WINDOW_MS = TIMEOUTS.confirm + 200;
const ENDPOINT_FAULT_STATUSES = new Set([401, 403, 404, 302]);
const ENDPOINT_FAULT_CODES = new Set(['PGRST202', 'PGRST301', '42501']);

export function brokenRules(run: RunResult): string[] {
  const { ledger, scenario } = run;
  const broken = [...ledger.violations];
  const byId = new Map(scenario.messages.map((m) => [m.id, m]));

  for (const d of ledger.deliveries) {
    const message = byId.get(d.msgId);
    // I1
    if (d.end === 'ack' && d.endedAt !== undefined && message !== undefined) {
      const at = d.endedAt;
      const job = ledger.jobs.some((j) => j.msgId === d.msgId && j.at <= at);
      const key = message.dedupeKey;
      const keyJob = key !== undefined && ledger.jobs.some((j) => j.dedupeKey === key && j.at <= at);
      const letter = ledger.deadLetters.some(
        (l) => l.msgId === d.msgId && l.confirmedAt !== undefined && l.confirmedAt <= at,
      );
      if (!job && !keyJob && !letter) {
        broken.push(
          `I1: ${d.msgId} acked at ${at} ms with no job, no job for its key, no confirmed dead letter`,
        );
      }
    }
    // I3 (deliveries still open at the end are measured to the end)
    const held = (d.endedAt ?? run.endedAt) - d.at;
    if (held > run.holdLimitMs && !broken.some((b) => b.startsWith(`I3: ${d.msgId} `))) {
      broken.push(`I3: ${d.msgId} (ch${d.channel}#${d.tag}) held ${held} ms, limit ${run.holdLimitMs} ms`);
    }
  }

  const ambiguousCalls = scenario.faults.filter(
    (f) =>
      f.kind === 'timeout' ||
      f.kind === 'bad_gateway' ||
      (f.kind === 'ok' && f.latency > Math.min(run.config.postgrest.timeoutMs, run.config.batch.timeoutMs)),
  ).length;
  for (const message of scenario.messages) {
    // I5
    const jobs = ledger.jobsOf(message.id).length;
    const answers = ledger.answers.get(message.id) ?? [];
    const ambiguous = answers.filter((a) => a === 'ambiguous').length;
    // A delivery the broker took back while its call was out (or its ack not yet sent): the
    // job may exist and the redelivery makes another.
    const sends = ledger.sends.filter((send) => send.msgId === message.id);
    const takenBack = ledger.deliveries.filter(
      (d) =>
        d.msgId === message.id &&
        (d.end === 'lost' || d.end === 'released') &&
        sends.some(
          (send) =>
            d.endedAt !== undefined &&
            send.sentAt <= d.endedAt &&
            (send.answeredAt === undefined || d.endedAt <= send.answeredAt + ACK_WINDOW_MS),
        ),
    ).length;
    if (jobs > 1 + ambiguous + takenBack) {
      broken.push(
        `I5: ${message.id} has ${jobs} jobs after ${ambiguous} ambiguous sends and ${takenBack} deliveries taken back`,
      );
    }
    if (ambiguous > ambiguousCalls) {
      broken.push(
        `I5: ${message.id} had ${ambiguous} ambiguous sends, more than the ${ambiguousCalls} faults that make one`,
      );
    }
    // I6
    for (const letter of ledger.deadLetters.filter((l) => l.msgId === message.id)) {
      const why = `${letter.kind} ${letter.httpStatus ?? ''} ${letter.code ?? ''}`;
      if (
        (letter.httpStatus !== undefined && ENDPOINT_FAULT_STATUSES.has(letter.httpStatus)) ||
        (letter.code !== undefined && ENDPOINT_FAULT_CODES.has(letter.code))
      ) {
        broken.push(`I6: ${message.id} dead-lettered for an endpoint fault (${why})`);
      }
      const cause =
        letter.kind === 'invalid_message'
          ? message.kind === 'invalid'
          : letter.kind === 'rejected_by_rpc'
            ? answers.includes('rejected')
            : answers.includes('failure') || answers.includes('ambiguous');
      if (!cause)
        broken.push(`I6: ${message.id} dead-lettered (${why}) with no cause (answers: ${answers.join(',')})`);
    }
  }

  // Work is never started for a delivery already gone: every send has a delivery of its message open.
  for (const send of ledger.sends) {
    const open = ledger.deliveries.some(
      (d) =>
        d.msgId === send.msgId &&
        d.at <= send.sentAt &&
        (d.endedAt === undefined || d.endedAt >= send.sentAt),
    );
    if (!open)
      broken.push(`I5: ${send.msgId} sent at ${send.sentAt} ms while none of its deliveries was open`);
  }

  if (!run.drained) {
    const acked = new Set(ledger.deliveries.filter((d) => d.end === 'ack').map((d) => d.msgId));
    const missing = scenario.messages.filter((m) => !acked.has(m.id)).map((m) => m.id);
    broken.push(`P: not drained once healthy; never acked: ${missing.join(', ')}`);
  }
  return broken;
}
