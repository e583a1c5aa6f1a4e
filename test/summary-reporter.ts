import { existsSync, readdirSync, rmdirSync, rmSync } from 'node:fs';
import type { Reporter, TestModule } from 'vitest/node';
import { SCRATCH_ROOT } from './helpers/scratch.js';
import { runtimeRootsOfThisRun, TEST_ROOT_PREFIX } from './helpers/lab.js';
import { liveLabQemuPids } from './helpers/processes.js';

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
    const roots = runtimeRootsOfThisRun();
    // A QEMU left behind makes the run red too (global-setup.ts fails it): its runtime dir is the evidence.
    if (failed === 0 && liveLabQemuPids(TEST_ROOT_PREFIX).length === 0) {
      for (const dir of [SCRATCH_ROOT, ...roots]) rmSync(dir, { recursive: true, force: true });
      return;
    }
    // Roots that ended empty held labs that went cleanly; the rest, and the scratch, are the run's evidence.
    for (const dir of roots) if (readdirSync(dir).length === 0) rmdirSync(dir);
    if (existsSync(SCRATCH_ROOT) || runtimeRootsOfThisRun().length > 0)
      process.stdout.write(`this run's results and artifacts are kept: ${SCRATCH_ROOT}, ${TEST_ROOT_PREFIX}*\n`);
  }
}
