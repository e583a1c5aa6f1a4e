import { expect } from 'vitest';
import { mkdtempSync, readdirSync, existsSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { loadProfile, type Profile } from '../../src/qemu/profile.js';
import { requireGuestImage } from '../../src/image/image-builder.js';
import type { GuestImage } from '../../src/image/image-cache.js';
import { describePressure } from '../../src/probes/pressure.js';
import type { ScenarioReport } from '../../src/scenario/scenario.js';
import { packageRoot } from '../../src/util/paths.js';
import { liveLabQemuPids } from './processes.js';
import { scratchDir } from './scratch.js';

/** Every test's runtime root starts with this, so leftovers can be attributed to the suite. */
export const TEST_ROOT_PREFIX = `/tmp/tcelab-t-${process.env.TCELAB_TEST_RUN ?? process.pid}-`;

/** A runtime root of this test file's own, so leftovers can be attributed. */
export function testRuntimeRoot(): string {
  return mkdtempSync(TEST_ROOT_PREFIX);
}

/** This run's runtime roots in /tmp (every file's, each made by testRuntimeRoot). */
export function runtimeRootsOfThisRun(): string[] {
  const prefix = TEST_ROOT_PREFIX.split('/').pop()!;
  return readdirSync('/tmp')
    .filter((name) => name.startsWith(prefix))
    .map((name) => join('/tmp', name));
}

export function runtimeDirsIn(root: string): string[] {
  return existsSync(root) ? readdirSync(root).map((d) => join(root, d)) : [];
}

export async function emulatedLabInputs(): Promise<{ profile: Profile; image: GuestImage }> {
  const profile = await loadProfile('emulated');
  const image = await requireGuestImage('base');
  return { profile, image };
}

/**
 * A check that did not pass, other than a host verdict the neighbours' accounting could not judge (N/A "not
 * judged: …", said with why): on this shared machine another test's neighbour may leave it uncertain; it is
 * never a pass either.
 */
export function judgedNotPassing(c: { status: string; notApplicable?: string }): boolean {
  return c.status !== 'pass' && !(c.status === 'not-applicable' && /^not judged: /.test(c.notApplicable ?? ''));
}

/**
 * The run passed — asserted so that, when it did not, the failure shows why (its error and every check that did not
 * pass, with what was measured) instead of `expected false to be true`: a failure in CI must be readable from its log.
 */
export function expectPassed(report: ScenarioReport): void {
  // With what the machine went through meanwhile: a run that failed on a machine that stalled says so.
  const machine = report.hostPressure ? `the machine during the run: ${describePressure(report.hostPressure)}` : undefined;
  expect({ error: report.error, notPassing: report.checks.filter(judgedNotPassing) }, machine).toEqual({
    error: undefined,
    notPassing: [],
  });
  expect(report.passed).toBe(true);
}

/**
 * `tcelab run <target> [args…] --results <tmp> --json` in a runtime root of its own: the report, the exit status and
 * stderr; no QEMU of it is left behind.
 */
export function runScenarioCli(
  target: string,
  args: string[] = [],
  timeoutMs = 170_000,
): { report: ScenarioReport; status: number | null; stderr: string } {
  const root = testRuntimeRoot();
  const argv = ['run', target, ...args, '--results', scratchDir('res'), '--json'];
  const cli = spawnSync(process.execPath, [join(packageRoot, 'dist/cli/main.js'), ...argv], {
    encoding: 'utf8',
    env: { ...process.env, TCELAB_RUNTIME_DIR: root },
    timeout: timeoutMs,
  });
  if (!cli.stdout.trim()) throw new Error(`tcelab ${argv.join(' ')} printed no report: ${cli.stderr.slice(-3000)}`);
  expect(liveLabQemuPids(root)).toEqual([]);
  return { report: JSON.parse(cli.stdout) as ScenarioReport, status: cli.status, stderr: cli.stderr };
}
