import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DEFAULT_SCENARIOS, parseOptions, UsageError } from '../../bench/options.ts';
import { describeSoak, type SoakSample, summariseSoak } from '../../bench/soak-summary.ts';

const MIB = 1024 * 1024;
const MESSAGES = 1000;

/** One sample per 100 jobs, from 0 to MESSAGES, with the RSS (in MiB) that `rss` gives each. */
function series(rss: (jobs: number) => number): SoakSample[] {
  return Array.from({ length: 11 }, (_, i) => ({
    seconds: i,
    jobs: i * 100,
    rssBytes: rss(i * 100) * MIB,
    published: MESSAGES,
    ready: 0,
  }));
}

describe('summariseSoak', () => {
  it('reads the RSS at the first sample at or past 10%, 50% and 90%, and at the last', () => {
    const summary = summariseSoak(
      series((jobs) => 80 + jobs / 100),
      MESSAGES,
      0,
    );
    assert.deepEqual(
      summary.points.map((point) => [point.share, point.sample?.jobs, point.sample?.rssBytes]),
      [
        [0.1, 100, 81 * MIB],
        [0.5, 500, 85 * MIB],
        [0.9, 900, 89 * MIB],
      ],
    );
    assert.equal(summary.end?.jobs, MESSAGES);
    assert.equal(summary.growthBytes, 9 * MIB);
  });

  it('is flat when the peak and the growth after 10% stay within the limits', () => {
    // A start-up spike before the 10% point, then the old generation's sawtooth (110 → 136 MiB
    // and back, as in a 1M soak), ending on a crest.
    const summary = summariseSoak(
      series((jobs) => (jobs === 0 ? 140 : jobs % 200 === 0 ? 136 : 110)),
      MESSAGES,
      0,
    );
    assert.equal(summary.flat, true);
    assert.deepEqual(summary.problems, []);
    assert.equal(summary.peakRssBytes, 140 * MIB);
    assert.equal(summary.growthBytes, 26 * MIB);
  });

  it('is not flat when RSS keeps growing, even under the peak limit', () => {
    const summary = summariseSoak(
      series((jobs) => 60 + jobs / 20),
      MESSAGES,
      0,
    );
    assert.equal(summary.flat, false);
    assert.equal(summary.growthBytes, 45 * MIB);
    assert.match(summary.problems.join(), /grew 45\.0 MB after the 10% point, over 32 MB/);
  });

  it('takes the kernel high-water mark as the peak when the samples missed it', () => {
    const summary = summariseSoak(
      series(() => 100),
      MESSAGES,
      160 * MIB,
    );
    assert.equal(summary.peakRssBytes, 160 * MIB);
    assert.equal(summary.flat, false);
    assert.match(summary.problems.join(), /peak 160 MB is over 150 MB/);
  });

  it('is not flat when the run did not finish', () => {
    const summary = summariseSoak(
      series(() => 100).filter((sample) => sample.jobs <= 600),
      MESSAGES,
      0,
    );
    assert.equal(summary.points[2]?.sample, undefined);
    assert.equal(summary.flat, false);
    assert.match(summary.problems.join(), /only 600 of 1000 messages done/);
  });

  it('does not claim a growth it could not measure', () => {
    const one: SoakSample = { seconds: 1, jobs: MESSAGES, rssBytes: 90 * MIB, published: MESSAGES, ready: 0 };
    const summary = summariseSoak([one], MESSAGES, 0);
    assert.equal(summary.growthBytes, undefined);
    assert.equal(summary.flat, false);
    assert.match(summary.problems.join(), /too few messages/);
    assert.equal(summariseSoak([], MESSAGES, 0).flat, false);
  });

  it('describes points, growth, peak and verdict on one line', () => {
    const line = describeSoak(
      summariseSoak(
        series((jobs) => 80 + jobs / 100),
        MESSAGES,
        0,
      ),
    );
    assert.equal(
      line,
      'RSS MB at 10% / 50% / 90% / end of the messages: 81 (1 s) / 85 (5 s) / 89 (9 s) / 90 (10 s); ' +
        'growth after 10% +9.0 MB; peak 90 MB → FLAT (flat = peak ≤ 150 MB and growth ≤ 32 MB)',
    );
  });
});

describe('bench options: the soak', () => {
  it('is not part of the default run', () => {
    const options = parseOptions([], {});
    assert.ok(options !== 'help');
    assert.deepEqual(options.scenarios, DEFAULT_SCENARIOS);
    assert.equal(options.soakMessages, 1_000_000);
  });

  it('runs when named, with its message count from the flag or the environment', () => {
    const fromFlag = parseOptions(['--scenarios', 'soak', '--soak-messages', '20000'], {});
    assert.ok(fromFlag !== 'help');
    assert.deepEqual(fromFlag.scenarios, ['soak']);
    assert.equal(fromFlag.soakMessages, 20_000);
    const fromEnv = parseOptions([], { BENCH_SOAK_MESSAGES: '5000' });
    assert.ok(fromEnv !== 'help');
    assert.equal(fromEnv.soakMessages, 5000);
  });

  it('rejects a count too small to sample', () => {
    assert.throws(() => parseOptions(['--soak-messages', '10'], {}), UsageError);
  });
});
