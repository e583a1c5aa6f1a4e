import { defineConfig } from 'vitest/config';

// Every lab this run starts lives under /tmp/tcelab-t-<run>-…: the run's leftover check
// then never mistakes another suite's (or a developer's) lab for one of its own.
process.env.TCELAB_TEST_RUN ??= `${process.pid}`;

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Real QEMU under TCG on two cores: labs must not compete for the CPU.
    fileParallelism: false,
    testTimeout: 180_000,
    hookTimeout: 180_000,
    reporters: ['default', './test/summary-reporter.ts'],
    globalSetup: ['test/global-setup.ts'],
  },
});
