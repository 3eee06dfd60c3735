/**
 * What happened in one model run, as the simulated broker and endpoint saw it: the facts the
 * invariants are checked against. Nothing here comes from the bridge's own view of itself.
 */

/** How a delivery ended, as the broker saw it. */
export type DeliveryEnd =
  | 'ack'
  | 'requeue'
  /** The broker closed the channel or connection (a fault): it requeued the delivery. */
  | 'lost'
  /** The bridge closed the channel: the broker requeued the delivery. */
  | 'released';

export interface DeliveryRecord {
  readonly msgId: string;
  readonly channel: number;
  readonly tag: number;
  readonly at: number;
  end?: DeliveryEnd;
  endedAt?: number;
}

export interface DeadLetterRecord {
  readonly msgId: string;
  readonly queue: string;
  readonly kind: string;
  readonly httpStatus: number | undefined;
  readonly code: string | undefined;
  readonly routedAt: number;
  confirmedAt?: number;
}

export interface JobRecord {
  readonly msgId: string;
  readonly dedupeKey: string | undefined;
  readonly at: number;
}

/** What the endpoint answered a message, in the terms the invariants need. */
export type AnswerKind = 'job' | 'duplicate' | 'rejected' | 'endpoint_fault' | 'failure' | 'ambiguous';

/** One message sent in one call, and when its answer reached the bridge. */
export interface SendRecord {
  readonly msgId: string;
  readonly sentAt: number;
  answeredAt?: number;
}

export interface BulkCall {
  readonly source: string;
  readonly size: number;
  readonly sentAt: number;
  answeredAt?: number;
  ambiguous?: boolean;
  ok?: boolean;
}

export class Ledger {
  readonly deliveries: DeliveryRecord[] = [];
  readonly deadLetters: DeadLetterRecord[] = [];
  readonly jobs: JobRecord[] = [];
  readonly answers = new Map<string, AnswerKind[]>();
  readonly bulkCalls: BulkCall[] = [];
  readonly sends: SendRecord[] = [];
  /** Broken rules seen while the run was going (the rest are checked at the end). */
  readonly violations: string[] = [];
  /** A short trace of the run's events, printed with a failure. */
  readonly trace: string[] = [];

  note(at: number, line: string): void {
    this.trace.push(`${String(at).padStart(7)} ${line}`);
    if (this.trace.length > 400) this.trace.shift();
  }

  violate(at: number, rule: string): void {
    this.violations.push(`${rule} (at ${at} ms)`);
    this.note(at, `VIOLATION ${rule}`);
  }

  answered(msgId: string, kind: AnswerKind): void {
    let list = this.answers.get(msgId);
    if (list === undefined) {
      list = [];
      this.answers.set(msgId, list);
    }
    list.push(kind);
  }

  jobsOf(msgId: string): JobRecord[] {
    return this.jobs.filter((job) => job.msgId === msgId);
  }
}
