import type { EnqueueArgs } from '../../../src/message/args.ts';
import type { BatchItemResult, RpcResult } from '../../../src/postgrest/client.ts';
import type { ProbeReport } from '../../../src/postgrest/probe.ts';
import type { AnswerKind, Ledger } from './ledger.ts';

/**
 * PostgREST and PostgreSQL as the model sees them, at the level of the RPC client's answers: a
 * jobs table with PGQueuer's dedupe index, and per call one scripted fault from the scenario.
 * A call slower than the client's timeout is answered with the client's TIMEOUT while the job is
 * still written when the call ends: the answer is lost, the commit is not.
 */

export type CallFault =
  | { readonly kind: 'ok'; readonly latency: number }
  /** 23505 on the primary key (the id sequence is behind): nothing written. */
  | { readonly kind: 'other_conflict' }
  | { readonly kind: 'reject' }
  | { readonly kind: 'endpoint'; readonly status: 401 | 403 | 404 | 302 }
  | { readonly kind: 'unavailable' }
  | { readonly kind: 'server_error' }
  | { readonly kind: 'statement_timeout' }
  /** A proxy's 502 after it forwarded the call, which may or may not have committed. */
  | { readonly kind: 'bad_gateway'; readonly commit: boolean }
  /** The answer never comes; the call may have committed first. */
  | { readonly kind: 'timeout'; readonly commit: boolean }
  | { readonly kind: 'refused' }
  /** The request path throws before anything is sent (an invalid header value). */
  | { readonly kind: 'throw' };

const DEDUPE_INDEX = 'pgqueuer_unique_dedupe_key';

interface Member {
  readonly msgId: string;
  readonly dedupeKey: string | undefined;
  readonly refused: boolean;
}

type Answer = RpcResult | readonly BatchItemResult[];

function httpError(status: number, code: string | null, message: string): RpcResult {
  return { kind: 'http_error', status, code, message, details: null, hint: null, retryAfterMs: 0 };
}

const ENDPOINT_FAULTS: Readonly<Record<401 | 403 | 404 | 302, RpcResult>> = {
  401: httpError(401, 'PGRST301', 'JWSError JWSInvalidSignature'),
  403: httpError(403, '42501', 'permission denied for function fn_pgqueuer_enqueue'),
  404: httpError(404, 'PGRST202', 'Could not find the function public.fn_pgqueuer_enqueue'),
  302: httpError(302, null, 'Found'),
};

export class Endpoint {
  readonly #ledger: Ledger;
  readonly #faults: readonly CallFault[];
  readonly #timeoutMs: number;
  readonly #batchTimeoutMs: number;
  readonly #sourceOf: (msgId: string) => string;
  readonly #dedupe = new Map<string, number>();
  #calls = 0;
  #nextJob = 1;
  /** After the chaos phase: every call answers at once. */
  healthy = false;

  constructor(
    ledger: Ledger,
    faults: readonly CallFault[],
    timeouts: { readonly single: number; readonly batch: number },
    sourceOf: (msgId: string) => string,
  ) {
    this.#ledger = ledger;
    this.#faults = faults;
    this.#timeoutMs = timeouts.single;
    this.#batchTimeoutMs = timeouts.batch;
    this.#sourceOf = sourceOf;
  }

  enqueue = (args: EnqueueArgs): Promise<RpcResult> => {
    const fault = this.#next();
    const member = memberOf(args.entrypoint, args.dedupeKey);
    return this.#call(fault, [member], this.#timeoutMs, () => {
      if (member.refused) return this.#answer([member], 'rejected', httpError(400, 'P0001', 'refused'));
      const existing = member.dedupeKey === undefined ? undefined : this.#dedupe.get(member.dedupeKey);
      if (existing !== undefined) {
        return this.#answer(
          [member],
          'duplicate',
          httpError(409, '23505', `duplicate key value violates unique constraint "${DEDUPE_INDEX}"`),
        );
      }
      const jobId = this.#write(member);
      this.#ledger.answered(member.msgId, 'job');
      return { kind: 'enqueued', jobId };
    }) as Promise<RpcResult>;
  };

  postBatch = (body: Buffer): Promise<Answer> => {
    const fault = this.#next();
    const { jobs } = JSON.parse(body.toString('utf8')) as {
      jobs: { entrypoint: string; dedupe_key?: string }[];
    };
    const members = jobs.map((job) => memberOf(job.entrypoint, job.dedupe_key));
    const call = {
      source: this.#sourceOf(members[0]?.msgId ?? ''),
      size: members.length,
      sentAt: Date.now(),
    };
    this.#ledger.bulkCalls.push(call);
    const answer = this.#call(fault, members, this.#batchTimeoutMs, () => {
      const refused = members.filter((m) => m.refused);
      if (refused.length > 0) return this.#answer(refused, 'rejected', httpError(400, 'P0001', 'refused'));
      return members.map((member): BatchItemResult => {
        const key = member.dedupeKey;
        if (key !== undefined && this.#dedupe.has(key)) {
          this.#ledger.answered(member.msgId, 'duplicate');
          return 'duplicate';
        }
        this.#ledger.answered(member.msgId, 'job');
        return { id: this.#write(member) };
      });
    });
    return answer.then((result) => {
      Object.assign(call, {
        answeredAt: Date.now(),
        ok: Array.isArray(result),
        ambiguous: isAmbiguous(result),
      });
      return result;
    });
  };

  /** The readiness probe: the endpoint answers it only once the faults are over. */
  probe = async (): Promise<ProbeReport> => ({
    verdict: this.healthy
      ? { ok: true, verified: true, reason: 'the functions are callable' }
      : { ok: false, kind: 'unreachable', reason: 'the endpoint is failing' },
    localDate: Date.now(),
  });

  #next(): CallFault {
    const fault = this.healthy ? undefined : this.#faults[this.#calls];
    this.#calls++;
    if (fault?.kind === 'throw') {
      throw Object.assign(new TypeError('Invalid character in header content ["authorization"]'), {
        code: 'ERR_INVALID_CHAR',
      });
    }
    return fault ?? { kind: 'ok', latency: 1 + Math.floor(Math.random() * 5) };
  }

  #write(member: Member): string {
    const id = this.#nextJob++;
    if (member.dedupeKey !== undefined) this.#dedupe.set(member.dedupeKey, id);
    this.#ledger.jobs.push({ msgId: member.msgId, dedupeKey: member.dedupeKey, at: Date.now() });
    this.#ledger.note(Date.now(), `job ${id} for ${member.msgId}`);
    return String(id);
  }

  #answer(members: readonly Member[], kind: AnswerKind, result: RpcResult): RpcResult {
    for (const member of members) this.#ledger.answered(member.msgId, kind);
    return result;
  }

  /** Answers after the fault's latency; a call past the timeout commits late and answers TIMEOUT. */
  #call(
    fault: CallFault,
    members: readonly Member[],
    timeoutMs: number,
    commit: () => Answer,
  ): Promise<Answer> {
    const failWith =
      (kind: AnswerKind, result: RpcResult): (() => Answer) =>
      () => {
        // A bulk call's failure is each member's, but only a single element's refusal is its own.
        for (const member of members)
          this.#ledger.answered(member.msgId, kind === 'rejected' && members.length > 1 ? 'failure' : kind);
        return result;
      };
    const sends = members.map((member) => ({ msgId: member.msgId, sentAt: Date.now() }));
    this.#ledger.sends.push(...sends);
    const at = (ms: number, answer: () => Answer): Promise<Answer> =>
      new Promise((resolve) =>
        setTimeout(() => {
          for (const send of sends) Object.assign(send, { answeredAt: Date.now() });
          resolve(answer());
        }, ms),
      );
    const timeout = failWith('ambiguous', {
      kind: 'network_error',
      errno: 'TIMEOUT',
      message: `no response within ${timeoutMs} ms`,
      requestSent: true,
    });
    switch (fault.kind) {
      case 'ok':
        if (fault.latency <= timeoutMs) return at(fault.latency, commit);
        setTimeout(commit, fault.latency);
        return at(timeoutMs, timeout);
      case 'timeout':
        if (fault.commit) setTimeout(commit, Math.floor(timeoutMs / 2));
        return at(timeoutMs, timeout);
      case 'bad_gateway':
        if (fault.commit) setTimeout(commit, 2);
        return at(5, failWith('ambiguous', httpError(502, null, 'Bad Gateway')));
      case 'other_conflict':
        return at(
          3,
          failWith(
            'failure',
            httpError(409, '23505', 'duplicate key value violates unique constraint "pgqueuer_pkey"'),
          ),
        );
      case 'reject':
        return at(3, failWith('rejected', httpError(400, '22P02', 'invalid input syntax for type json')));
      case 'endpoint':
        return at(3, failWith('endpoint_fault', ENDPOINT_FAULTS[fault.status]));
      case 'unavailable':
        return at(3, failWith('failure', httpError(503, null, 'Service Unavailable')));
      case 'server_error':
        return at(3, failWith('failure', httpError(500, 'XX000', 'internal error')));
      case 'statement_timeout':
        return at(
          timeoutMs / 2,
          failWith('failure', httpError(500, '57014', 'canceling statement due to statement timeout')),
        );
      case 'refused':
        return at(
          1,
          failWith('failure', {
            kind: 'network_error',
            errno: 'ECONNREFUSED',
            message: 'connect ECONNREFUSED',
            requestSent: false,
          }),
        );
      case 'throw':
        throw new Error('unreachable: thrown before the call');
    }
  }
}

function memberOf(entrypoint: string, dedupeKey: string | undefined): Member {
  return {
    msgId: entrypoint.replace(/^(job|refuse)_/, ''),
    dedupeKey,
    refused: entrypoint.startsWith('refuse_'),
  };
}

function isAmbiguous(answer: Answer): boolean {
  if (Array.isArray(answer)) return false;
  const result = answer as RpcResult;
  return (
    (result.kind === 'network_error' && result.requestSent) ||
    (result.kind === 'http_error' && result.status === 502)
  );
}
