/**
 * The memory soak's verdict, from the bridge's RSS series alone: no I/O here, so the verdict can
 * be tested on made-up series.
 */

const MIB = 1024 * 1024;

export interface SoakSample {
  /** Since the bridge was started. */
  readonly seconds: number;
  /** Job ids taken so far: an upper bound of the messages done, cheap enough to read every second. */
  readonly jobs: number;
  /** The bridge's VmRSS. */
  readonly rssBytes: number;
  /** Messages published so far, and ready in the queue: the backlog the bridge was given. */
  readonly published: number;
  readonly ready: number;
}

export interface SoakLimits {
  readonly peakRssBytes: number;
  readonly growthBytes: number;
}

/**
 * The peak is the throughput issue's target. Growth is measured from the 10% point, after the
 * bridge has compiled its code and V8 has sized its heap spaces, and compares two single
 * samples, so the bound has to sit above the old generation's sawtooth: in a 1M batch soak
 * that is flat overall, RSS moved between 108 and 136 MB after the 10% point. 32 MB over
 * the 900,000 messages after the 10% point (at the default 1M) is a leak of 37 bytes per
 * message, less than any JS object kept per message costs. With fewer messages the same bound
 * catches only larger leaks.
 */
export const SOAK_LIMITS: SoakLimits = { peakRssBytes: 150 * MIB, growthBytes: 32 * MIB };

/** Shares of the messages at which the RSS is reported; growth counts from the first. */
export const SOAK_SHARES = [0.1, 0.5, 0.9] as const;

export interface SoakPoint {
  readonly share: number;
  /** The first sample at or past the share, or undefined when the run never got there. */
  readonly sample: SoakSample | undefined;
}

export interface SoakSummary {
  /** The highest RSS of the series and of the kernel's high-water mark, which a 1 s series can miss. */
  readonly peakRssBytes: number;
  readonly points: readonly SoakPoint[];
  readonly end: SoakSample | undefined;
  /** RSS at the end minus RSS at the first point; undefined without two distinct samples to compare. */
  readonly growthBytes: number | undefined;
  readonly flat: boolean;
  /** Why the run is not flat; empty when it is. */
  readonly problems: readonly string[];
  readonly limits: SoakLimits;
}

export function summariseSoak(
  samples: readonly SoakSample[],
  messages: number,
  highWaterBytes: number,
  limits: SoakLimits = SOAK_LIMITS,
): SoakSummary {
  const points = SOAK_SHARES.map((share) => ({
    share,
    sample: samples.find((sample) => sample.jobs >= share * messages),
  }));
  const end = samples.at(-1);
  const from = points[0]?.sample;
  const growthBytes =
    from === undefined || end === undefined || from === end ? undefined : end.rssBytes - from.rssBytes;
  const peakRssBytes = samples.reduce((peak, sample) => Math.max(peak, sample.rssBytes), highWaterBytes);
  const problems: string[] = [];
  if (end === undefined || end.jobs < messages) {
    problems.push(`only ${end?.jobs ?? 0} of ${messages} messages done`);
  }
  if (peakRssBytes > limits.peakRssBytes) {
    problems.push(`peak ${mb(peakRssBytes)} MB is over ${mb(limits.peakRssBytes)} MB`);
  }
  if (growthBytes === undefined) {
    problems.push('no samples between the 10% point and the end to measure growth (too few messages)');
  } else if (growthBytes > limits.growthBytes) {
    problems.push(`grew ${mb(growthBytes, 1)} MB after the 10% point, over ${mb(limits.growthBytes)} MB`);
  }
  return { peakRssBytes, points, end, growthBytes, flat: problems.length === 0, problems, limits };
}

/** One line for the printed table's notes. */
export function describeSoak(summary: SoakSummary): string {
  const at = (sample: SoakSample | undefined): string =>
    sample === undefined ? '—' : `${mb(sample.rssBytes)} (${sample.seconds.toFixed(0)} s)`;
  const shares = summary.points.map((point) => `${(100 * point.share).toFixed(0)}%`).join(' / ');
  const values = summary.points.map((point) => at(point.sample)).join(' / ');
  const growth =
    summary.growthBytes === undefined
      ? '—'
      : `${summary.growthBytes >= 0 ? '+' : ''}${mb(summary.growthBytes, 1)} MB`;
  const verdict = summary.flat ? 'FLAT' : `NOT FLAT: ${summary.problems.join('; ')}`;
  return (
    `RSS MB at ${shares} / end of the messages: ${values} / ${at(summary.end)}; ` +
    `growth after 10% ${growth}; peak ${mb(summary.peakRssBytes)} MB → ${verdict} ` +
    `(flat = peak ≤ ${mb(summary.limits.peakRssBytes)} MB and growth ≤ ${mb(summary.limits.growthBytes)} MB)`
  );
}

function mb(bytes: number, digits = 0): string {
  return (bytes / MIB).toFixed(digits);
}
