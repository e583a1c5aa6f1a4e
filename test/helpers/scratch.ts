import { mkdirSync, mkdtempSync } from 'node:fs';
import { join } from 'node:path';

/**
 * Everything a test writes for itself (results dirs, scenario files, trees, bundles) goes under one directory of the
 * run, so that a green run can take it all away (test/summary-reporter.ts) and a red one keeps it whole as its
 * evidence: a suite left some 150 dirs and 400 MB in /tmp each time, most of it kernel build trees.
 * The run's id is vitest.config.ts's TCELAB_TEST_RUN, which every worker inherits.
 */
export const SCRATCH_ROOT = `/tmp/tcelab-s-${process.env.TCELAB_TEST_RUN ?? process.pid}`;

/** A new directory of this run's scratch, named after what it holds. */
export function scratchDir(label: string): string {
  mkdirSync(SCRATCH_ROOT, { recursive: true, mode: 0o700 });
  return mkdtempSync(join(SCRATCH_ROOT, `${label}-`));
}
