import { type CheckResult, checksFor } from './checks.ts';
import { DoctorContext } from './context.ts';

/**
 * `pgq-bridge doctor --config FILE`: runs every check (checks.ts) in order and prints a
 * checklist, a fix under each failure. A check whose prerequisites did not pass is skipped, so
 * one root cause gives one failure. Exit code 0 only when nothing failed ("warn" means it
 * passed as far as can be told from outside, and says what is left).
 */

export interface Output {
  write(text: string): unknown;
}

const MARK: Readonly<Record<CheckResult['status'] | 'skip', string>> = {
  pass: '[ ok ]',
  warn: '[warn]',
  fail: '[FAIL]',
  skip: '[skip]',
};

export async function runDoctor(
  configPath: string | undefined,
  env: Readonly<Record<string, string | undefined>>,
  out: Output,
): Promise<number> {
  const ctx = new DoctorContext(configPath, env);
  const passed = new Set<string>();
  let failed = 0;
  let skipped = 0;
  out.write(`pgq-bridge doctor: ${configPath ?? '(no config file given)'}\n`);
  try {
    for (const check of checksFor(ctx)) {
      const missing = check.needs.filter((name) => !passed.has(name));
      if (missing.length > 0) {
        skipped++;
        out.write(`${MARK.skip} ${check.name} (needs: ${missing.join(', ')})\n`);
        continue;
      }
      let result: CheckResult;
      try {
        result = await check.run(ctx);
      } catch (error) {
        result = { status: 'fail', detail: `the check itself failed: ${String(error)}` };
      }
      const detail = result.detail === undefined ? '' : `: ${result.detail}`;
      out.write(`${MARK[result.status]} ${check.name}${detail}\n`);
      if (result.status === 'fail') {
        failed++;
        out.write(`       fix: ${result.fix ?? check.fix}\n`);
      } else {
        passed.add(check.name);
      }
    }
  } finally {
    await ctx.close();
  }
  const total = passed.size + failed + skipped;
  out.write(
    failed === 0
      ? `all ${total} checks passed\n`
      : `${failed} of ${total} checks failed${skipped > 0 ? `, ${skipped} skipped` : ''}\n`,
  );
  return failed === 0 ? 0 : 1;
}
