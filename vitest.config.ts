import { readFileSync } from 'node:fs';
import { relative } from 'node:path';
import { BaseSequencer, type TestSpecification } from 'vitest/node';
import { defineConfig } from 'vitest/config';

/**
 * Longest files first (test/durations.json: measured durations of one suite run, in ms): with two files at a time
 * the suite then ends close to half its total test time, instead of waiting on a long file that happened to start
 * last (a fresh clone has no duration cache of vitest's own). A file not in the table runs after the known ones.
 */
class LongestFirst extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const durations = JSON.parse(readFileSync('test/durations.json', 'utf8')) as Record<string, number>;
    const ms = (f: TestSpecification) => durations[relative(process.cwd(), f.moduleId)] ?? -1;
    return [...files].sort((a, b) => ms(b) - ms(a));
  }
}

// Every lab this run starts lives under /tmp/tcelab-t-<run>-…: the run's leftover check
// then never mistakes another suite's (or a developer's) lab for one of its own.
process.env.TCELAB_TEST_RUN ??= `${process.pid}`;

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Two files at once on two cores: a lab's verdicts must not depend on what else the machine runs
    // (the host verdicts are attributed to the lab, the guest's are its own), and the suite proves it
    // every time. TCELAB_TEST_JOBS=1 runs one file at a time.
    fileParallelism: process.env.TCELAB_TEST_JOBS !== '1',
    maxWorkers: Number(process.env.TCELAB_TEST_JOBS ?? 2),
    // One worker process per concurrent file, reused: the suite's ~70 files otherwise each start a fresh worker that
    // loads vitest and imports tcelab's modules again (about 1 CPU-s a file, 70 CPU-s a suite on a machine bound by its
    // CPU). Measured side by side from fresh clones: 307 s against 344–361 s, vitest's workers 32 CPU-s against 69–82.
    // What a file leaves in the process is restored by the file itself (environment variables), or harmless (tcelab's
    // caches keyed by what they cache; signal handlers are removed by whoever installs them).
    isolate: false,
    testTimeout: 180_000,
    hookTimeout: 180_000,
    reporters: ['default', './test/summary-reporter.ts'],
    globalSetup: ['test/global-setup.ts'],
    sequence: { sequencer: LongestFirst },
  },
});
