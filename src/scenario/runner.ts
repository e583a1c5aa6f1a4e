import { mkdir, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { Lab } from '../qemu/lab.js';
import { loadProfile } from '../qemu/profile.js';
import { requireGuestImage } from '../image/image-builder.js';
import { HostDdwView } from '../ddw/host-view.js';
import { CheckRecorder, type Check } from './checks.js';
import type { Phase, ScenarioContext, ScenarioDefinition } from './scenario.js';
import { describeError } from '../util/errors.js';
import { silentProgress, type Progress } from '../util/progress.js';
import { installInterruptHandlers } from '../cli/interrupt.js';

export interface ScenarioReport {
  scenario: string;
  profile: string;
  passed: boolean;
  startedAt: string;
  durationMs: number;
  guestKernel?: string;
  qemuVersion?: string;
  spawnToInitMs?: number;
  checks: Check[];
  phases: Phase[];
  error?: string;
  resultsDir: string;
}

export interface RunOptions {
  profile?: string;
  progress?: Progress;
  resultsDir?: string;
  runtimeRoot?: string;
  options?: Record<string, number | string | boolean>;
  /** Install SIGINT/SIGTERM handlers that tear the lab down (the CLI does). */
  handleSignals?: boolean;
}

export function defaultResultsDir(scenario: string): string {
  const stamp = new Date().toISOString().replace(/[-:]/g, '').replace(/\..*$/, '').replace('T', '-');
  return resolve('results', `${scenario}-${stamp}`);
}

/**
 * Runs one scenario on a fresh lab: launch, boot, agent, the scenario's steps,
 * shutdown, teardown. Writes results.json and the artifacts (console log, QMP
 * and agent transcripts, QEMU stderr) to the results dir, pass or fail.
 */
export async function runScenario(def: ScenarioDefinition, opts: RunOptions = {}): Promise<ScenarioReport> {
  const progress = opts.progress ?? silentProgress;
  const resultsDir = opts.resultsDir ?? defaultResultsDir(def.name);
  await mkdir(resultsDir, { recursive: true });
  const t0 = Date.now();
  const phases: Phase[] = [];
  const phase = (name: string) => phases.push({ name, atMs: Date.now() - t0, wallTime: new Date().toISOString() });
  const checks = new CheckRecorder(progress);
  const report: ScenarioReport = {
    scenario: def.name, profile: opts.profile ?? def.defaultProfile, passed: false, startedAt: new Date(t0).toISOString(),
    durationMs: 0, checks: checks.checks, phases, resultsDir,
  };
  const profile = await loadProfile(opts.profile ?? def.defaultProfile);
  const image = await requireGuestImage(profile.guest.image);
  phase('launch');
  const lab = await Lab.launch(profile, { image, progress, runtimeRoot: opts.runtimeRoot });
  const uninstall = opts.handleSignals
    ? installInterruptHandlers(async () => {
        lab.failed = true;
        await lab.dispose({ artifactsTo: join(resultsDir, 'artifacts') });
      })
    : () => {};
  try {
    report.qemuVersion = lab.qmp.qemuVersion;
    const init = await lab.waitForGuestInit(progress);
    report.guestKernel = init.kernelRelease;
    report.spawnToInitMs = init.spawnToInitMs;
    phase('guest init');
    const agent = await lab.agent(progress);
    phase('agent ready');
    const ctx: ScenarioContext = {
      lab, agent, profile, checks, progress, phase, shutDown: false, options: opts.options ?? {},
      ddw: new HostDdwView(lab.qmp, lab.process.ddwTrace, profile.phbs),
    };
    progress.info(`scenario ${def.name} on ${profile.name} (guest ${init.kernelRelease}, QEMU ${lab.qmp.qemuVersion})`);
    await def.run(ctx);
    if (!ctx.shutDown) {
      phase('shutdown requested');
      const sd = await lab.shutdown('powerdown', progress);
      phase('process exit');
      checks.equal('guest powered off cleanly', sd.effective, 'powerdown', sd.escalations.join('; ') || undefined);
    }
  } catch (err) {
    report.error = describeError(err);
    checks.record('scenario ran to the end', false, 'no error', report.error);
  } finally {
    uninstall();
    report.passed = checks.passed && !report.error;
    if (!report.passed) lab.failed = true;
    await lab.dispose({ artifactsTo: join(resultsDir, 'artifacts') });
    report.durationMs = Date.now() - t0;
    await writeFile(join(resultsDir, 'results.json'), `${JSON.stringify(report, null, 2)}\n`).catch((err) => {
      report.error = `${report.error ? `${report.error}; ` : ''}could not write results.json: ${(err as Error).message}`;
      report.passed = false;
    });
  }
  return report;
}
