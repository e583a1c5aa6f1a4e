import { readFileSync } from 'node:fs';
import { relative } from 'node:path';
import { BaseSequencer, type TestSpecification } from 'vitest/node';
import { defineConfig } from 'vitest/config';
import { cpuBudget } from './test/helpers/cpu-budget.js';

/**
 * Longest files first (test/durations.json: measured durations of one suite run, in ms): with several files at a time
 * the suite then ends close to its total test time over the files at once, instead of waiting on a long file that happened to start
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
    // One file more at once than the CPUs' worth of time the suite may use: a lab leaves part of a core idle (the
    // guest waiting on its timers, a step's deliberate timeout, a release's confirmation window) — with two files on
    // two cores 170 of 660 core-seconds went unused — and a third file fills it: 259 s against 319 s, measured one
    // after the other from fresh clones (docs/benchmark.md). Under a CPU quota there is no idle time to fill (one
    // core's worth for two cores, scripts/slow-machine.sh: 614 s with three files against 506–528 s with two), so the
    // quota counts (test/helpers/cpu-budget.ts). A lab's verdicts must not depend on what else the machine runs (the
    // host verdicts are attributed to the lab, the guest's are its own), and the suite proves it every time.
    // TCELAB_TEST_JOBS=N runs N files at a time (1: one after another).
    fileParallelism: process.env.TCELAB_TEST_JOBS !== '1',
    maxWorkers: Number(process.env.TCELAB_TEST_JOBS ?? cpuBudget() + 1),
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
