import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { brokenRules } from '../support/model/invariants.ts';
import { runScenario } from '../support/model/run.ts';
import { scenarioArbitrary } from '../support/model/scenario.ts';

/**
 * The delivery guarantee as properties of whole runs: the real bridge core against a simulated
 * broker and endpoint that fail in every way the model knows, under random interleavings, in
 * virtual time. See test/support/model/invariants.ts for the rules.
 *
 * PGQ_MODEL_RUNS sets the runs per mode (CI: 60; `npm run test:model`: 2000). A failure prints
 * its seed and path; PGQ_MODEL_SEED (and PGQ_MODEL_PATH) replay it, PGQ_MODEL_LOG=debug shows
 * the bridge's log of the replay.
 */

const runs = Number(process.env.PGQ_MODEL_RUNS ?? 60);
const seed = process.env.PGQ_MODEL_SEED === undefined ? undefined : Number(process.env.PGQ_MODEL_SEED);
const path = process.env.PGQ_MODEL_PATH;

for (const batch of [false, true]) {
  describe(`the delivery core in ${batch ? 'batch' : 'single'} mode`, () => {
    it(`keeps I1-I6 and drains once healthy, over ${runs} random runs`, async () => {
      await fc.assert(
        fc.asyncProperty(scenarioArbitrary(batch), async (scenario) => {
          const run = await runScenario(scenario);
          const broken = brokenRules(run);
          if (broken.length > 0) {
            assert.fail(
              `${broken.join('\n')}\n--- last events ---\n${run.ledger.trace.slice(-60).join('\n')}`,
            );
          }
        }),
        {
          numRuns: seed === undefined ? runs : 1,
          ...(seed === undefined ? {} : { seed }),
          ...(path === undefined ? {} : { path }),
          endOnFailure: process.env.PGQ_MODEL_SHRINK === undefined,
          reporter: (details) => {
            if (!details.failed) return;
            console.error(
              `model run failed: PGQ_MODEL_SEED=${details.seed} PGQ_MODEL_PATH=${details.counterexamplePath ?? ''}`,
            );
            const cause = details.errorInstance instanceof Error ? details.errorInstance.message : '';
            throw new Error(`${cause}\n${fc.defaultReportMessage(details)}`);
          },
        },
      );
    });
  });
}
