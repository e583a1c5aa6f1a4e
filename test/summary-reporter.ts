import { existsSync, readdirSync, rmSync } from 'node:fs';
import type { Reporter, TestModule } from 'vitest/node';
import { SCRATCH_ROOT } from './helpers/scratch.js';
import { TEST_ROOT_PREFIX } from './helpers/lab.js';

/**
 * Prints the plain closing line `tests: N passed, N failed, N skipped` that CI reads; then takes away what the run
 * wrote for itself if it was green (its scratch, and the runtime roots where labs that failed on purpose kept their
 * artifacts), or says where it all is if it was not.
 */
export default class SummaryReporter implements Reporter {
  onTestRunEnd(testModules: ReadonlyArray<TestModule>, unhandledErrors: ReadonlyArray<unknown>): void {
    let passed = 0;
    let failed = unhandledErrors.length;
    let skipped = 0;
    for (const m of testModules) {
      if (m.state() === 'failed' && [...m.children.allTests()].length === 0) failed++;
      for (const t of m.children.allTests()) {
        const s = t.result().state;
        if (s === 'passed') passed++;
        else if (s === 'failed') failed++;
        else skipped++;
      }
    }
    process.stdout.write(`\ntests: ${passed} passed, ${failed} failed, ${skipped} skipped\n`);
    const prefix = TEST_ROOT_PREFIX.split('/').pop()!;
    const roots = readdirSync('/tmp')
      .filter((name) => name.startsWith(prefix))
      .map((name) => `/tmp/${name}`);
    const written = [...(existsSync(SCRATCH_ROOT) ? [SCRATCH_ROOT] : []), ...roots];
    if (written.length === 0) return;
    if (failed === 0) for (const dir of written) rmSync(dir, { recursive: true, force: true });
    else process.stdout.write(`this run's results and artifacts are kept: ${SCRATCH_ROOT}, ${TEST_ROOT_PREFIX}*\n`);
  }
}
