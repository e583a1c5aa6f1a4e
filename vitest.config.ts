import { defineConfig } from 'vitest/config';

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
    testTimeout: 180_000,
    hookTimeout: 180_000,
    reporters: ['default', './test/summary-reporter.ts'],
    globalSetup: ['test/global-setup.ts'],
  },
});
