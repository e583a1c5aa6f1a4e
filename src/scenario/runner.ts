import { ensureGuestModule, type GuestModule } from '../kbuild/guest-module.js';
import { mkdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { HostDdwView } from '../ddw/host-view.js';
import { AgentHost } from '../host/agent-host.js';
import type { GuestImage } from '../image/image-cache.js';
import { requireGuestImage } from '../image/image-builder.js';
import {
  type KernelFacts,
  mergeRequirements,
  RPA_HOTPLUG_REQUIREMENTS,
  unmetRequirements,
  VFIO_SPAPR_REQUIREMENTS,
} from '../kernel/kernel-facts.js';
import type { LiveServer } from '../live/live-server.js';
import { type HostBaseline, readHostBaseline } from './run/host-baseline.js';
import { pressureOverRun, readPressure, type PressureTotals } from '../probes/pressure.js';
import { ProcessScanner } from '../probes/host-attribution.js';
import { ProcCountersProbe } from '../probes/proc.js';
import type { Sample } from '../probes/sampler.js';
import type { Lab } from '../lab/lab.js';
import { loadProfile, type Profile, withInputs } from '../qemu/profile.js';
import { describeError, InputError, TcelabError } from '../util/errors.js';
import { type Progress, silentProgress } from '../util/progress.js';
import { GuestSession } from './run/guest-session.js';
import { judgeHostKernelLog } from './run/host-kernel-log.js';
import { judgeHostRelease } from './run/host-release.js';
import type { LabHost } from './run/lab-host.js';
import { labUnderTest, openLabHost } from './run/open-lab-host.js';
import { judgesTcePath, judgeTcePath } from './run/tce-path-verdict.js';
import { RunObservation } from './run/observation.js';
import type { ScenarioContext, ScenarioDefinition, ScenarioReport } from './scenario.js';
import { validateScenarioOptions } from './seeded-faults.js';

export interface RunOptions {
  profile?: string;
  /** The guest kernel under test (kernel-spec.ts), instead of the profile's guest.kernel. */
  kernel?: string;
  /** The host QEMU binary (a path or a name on PATH), instead of the profile's qemu.binary. */
  qemu?: string;
  progress?: Progress;
  resultsDir?: string;
  runtimeRoot?: string;
  options?: Record<string, number | string | boolean>;
  /**
   * Aborting it (the CLI does on SIGINT/SIGTERM) stops the scenario's steps, quits QEMU and judges and reports
   * what was measured so far; runScenario then resolves with a failed report.
   */
  signal?: AbortSignal;
  hostRateHz?: number;
  guestRateHz?: number;
  /** How long counters may take to return to baseline after QEMU exits. */
  releaseTimeoutMs?: number;
  /**
   * Mlocked is system-wide: other processes' locked memory moves it by a few
   * kB (seen: ±16 kB here). Within this many kB of the baseline counts as back.
   */
  mlockedToleranceKb?: number;
  /** Publishes samples, phases, checks and QMP events as they happen. */
  live?: LiveServer;
  /** 'use': start from a saved machine where that is faithful (the default); 'off': boot cold (--cold, TCELAB_SNAPSHOTS=off). */
  snapshots?: 'use' | 'off';
  /**
   * Writes the run's report files (report/write.ts: results.json, junit.xml, timeline.svg) once it is judged; a
   * failure to write fails the run. The caller of the runner owns its reports: without it, none are written.
   */
  writeResults?: (report: ScenarioReport) => Promise<void>;
}

export function defaultResultsDir(scenario: string): string {
  const stamp = new Date().toISOString().replace(/[-:]/g, '').replace(/\..*$/, '').replace('T', '-');
  return resolve('results', `${scenario}-${stamp}`);
}

/** The run was told to stop (a signal): the scenario's steps end here. */
export class RunInterruptedError extends TcelabError {
  constructor(reason: unknown) {
    super(
      'run',
      `interrupted (${reason instanceof Error ? reason.message : String(reason ?? 'aborted')})`,
      'the lab was quit; what was measured so far is in the results',
    );
    this.name = 'RunInterruptedError';
  }
}

/** Resolves never; rejects when the signal aborts. */
function abortion(signal: AbortSignal | undefined): Promise<never> {
  return new Promise((_, reject) => {
    if (!signal) return;
    if (signal.aborted) reject(new RunInterruptedError(signal.reason));
    signal.addEventListener('abort', () => reject(new RunInterruptedError(signal.reason)), { once: true });
  });
}

/** The first sample of the host's counters (a lab host that is a guest answers through its agent): an event wait's ceiling. */
const FIRST_SAMPLE_CEILING_MS = 30_000;

/** How long interrupted steps get to finish their own clean-up after the lab is gone. */
const STEPS_WIND_DOWN_MS = 10_000;

/** What a run holds between its parts. */
interface Run {
  def: ScenarioDefinition;
  opts: RunOptions;
  progress: Progress;
  observation: RunObservation;
  report: ScenarioReport;
  /** Counts the lab's own processes apart from its neighbours' on the host. */
  scanner: ProcessScanner;
  /** Whether the lab passes a device through under KVM: then QEMU's TCE trace is judged (run/tce-path-verdict.ts). */
  tcePathJudged: boolean;
  /** The machine that runs QEMU (lab-host.ts): opened before the lab, judged after it, disposed of last. */
  labHost?: LabHost;
  faults: Set<string>;
  /** The machine's pressure totals when the run began (where it has PSI). */
  pressureAtStart?: PressureTotals;
  /** Once launched. */
  lab?: Lab;
  /** The guest modules the definition declared, built (or not applicable) before launch. */
  guestModules: Map<string, GuestModule>;
}

/**
 * Runs one scenario on a fresh lab, in five parts: prepare (options, profile, image) → launch (host baseline
 * before QEMU exists, then QEMU) → run the steps (guest up, agent, the scenario) → judge (the guest goes away
 * properly, the host is judged) → report (results.json, junit.xml, timeline.svg and the artifacts, pass or fail).
 */
export async function runScenario(def: ScenarioDefinition, opts: RunOptions = {}): Promise<ScenarioReport> {
  const { run, profile, image } = await prepare(def, opts);
  const launched = await launch(run, profile, image);
  const session = new GuestSession(
    launched.lab,
    run.observation.checks,
    run.progress,
    (n) => run.observation.phase(n),
    def.keepsGuestPins,
    () => opts.signal?.aborted === true,
  );
  const steps = runSteps(run, launched, session);
  try {
    await Promise.race([steps, abortion(opts.signal)]);
  } catch (err) {
    run.report.error = describeError(err);
    run.observation.checks.record('scenario ran to the end', false, 'no error', run.report.error);
  }
  await judge(run, launched, session);
  // Interrupted steps wind down once their lab is gone (their own clean-up, an inner lab's transcripts): wait for
  // that before the lab's directory becomes the artifacts, but not forever.
  await Promise.race([steps.catch(() => {}), new Promise((r) => setTimeout(r, STEPS_WIND_DOWN_MS).unref())]);
  await finish(run, launched.lab);
  return run.report;
}

/** The modules a definition declares, built for the image's kernel (each says how, or why not). */
async function buildGuestModules(def: ScenarioDefinition, image: GuestImage, progress: Progress): Promise<Map<string, GuestModule>> {
  const out = new Map<string, GuestModule>();
  for (const name of def.guestModules ?? []) {
    const m = await ensureGuestModule(name, image.manifest, progress);
    const how = 'module' in m && m.module.buildMs ? `built in ${(m.module.buildMs / 1000).toFixed(1)} s` : 'cached';
    progress.info(
      'module' in m
        ? `guest module ${name}: ${m.module.ko} (${m.module.against.source}, ${how})`
        : `guest module ${name}: not applicable: ${m.notApplicable}`,
    );
    out.set(name, m);
  }
  return out;
}

const describeGuestModule = (name: string, m: GuestModule) =>
  'module' in m
    ? {
        name,
        vermagic: m.module.vermagic,
        source: m.module.against.source,
        forced: m.module.against.forced,
        buildMs: m.module.buildMs,
        preparedMs: m.module.preparedMs,
      }
    : { name, notApplicable: m.notApplicable };

/** A kernel that lacks what the scenario needs is bad input, naming what is missing, rather than a failure in the guest. */
export function refuseKernelLacking(def: ScenarioDefinition, kernelText: string, facts: KernelFacts): void {
  const unmet = unmetRequirements(facts, mergeRequirements(VFIO_SPAPR_REQUIREMENTS, def.requires));
  if (unmet.length) {
    throw new InputError(
      `kernel ${kernelText}`,
      facts.release,
      `lacks what ${def.name} needs: ${unmet.join(', ')}`,
      'pick another kernel with --kernel, or a scenario that does not need it',
    );
  }
}

/**
 * A scenario that hot-plugs (drmgr) on a lab whose profile leaves the RPA hotplug driver out of its guest
 * (guest.hotplug: false) is bad input, naming the field, rather than a drmgr failure in the guest.
 */
export function refuseHotplugLeftOut(def: Pick<ScenarioDefinition, 'name' | 'requires' | 'drivesInnerLabs'>, profile: Profile): void {
  const lab = labUnderTest(def, profile);
  const rpa = RPA_HOTPLUG_REQUIREMENTS.modules ?? [];
  const hotplugs = rpa.some((m) => def.requires?.modules?.includes(m));
  if (lab.guest.hotplug || !hotplugs) return;
  const field = lab === profile ? 'guest.hotplug' : 'inner.guest.hotplug';
  throw new InputError(
    `profile ${profile.name}`,
    field,
    `is false: its guest boots without ${rpa.join(', ')}, which ${def.name} needs to hot-plug (drmgr)`,
    `run ${def.name} on a profile whose ${field} is true (the default), e.g. a copy of this one with it set`,
  );
}

/** Bad options are refused here, before anything starts; the report exists from here on. */
async function prepare(def: ScenarioDefinition, opts: RunOptions): Promise<{ run: Run; profile: Profile; image: GuestImage }> {
  const progress = opts.progress ?? silentProgress;
  const faults = validateScenarioOptions(def, opts.options ?? {});
  const resultsDir = opts.resultsDir ?? defaultResultsDir(def.name);
  await mkdir(resultsDir, { recursive: true });
  let profile = withInputs(await loadProfile(opts.profile ?? def.defaultProfile), opts);
  // Judged on the profile as given: a seeded fault that moves the lab off the KVM path must fail these checks.
  const tcePathJudged = judgesTcePath(labUnderTest(def, profile));
  if (def.adjustProfile) profile = def.adjustProfile(profile, opts.options ?? {});
  refuseHotplugLeftOut(def, profile);
  // The kernel must have what the scenario needs: refused now, naming what is missing, rather than failing in the guest.
  const image = await requireGuestImage(profile.guest.image, profile.guest.kernel);
  refuseKernelLacking(def, profile.guest.kernel, image.manifest.kernel);
  const guestModules = await buildGuestModules(def, image, progress);
  const observation = new RunObservation(progress, opts.live, { scenario: def.name, profile: profile.name });
  const report: ScenarioReport = {
    scenario: def.name,
    profile: opts.profile ?? def.defaultProfile,
    options: opts.options ?? {},
    passed: false,
    startedAt: new Date(observation.t0).toISOString(),
    durationMs: 0,
    guestRamMiB: profile.qemu.memoryMiB,
    kernel: image.manifest.kernel,
    ...(guestModules.size ? { guestModules: [...guestModules].map(([name, m]) => describeGuestModule(name, m)) } : {}),
    qemuBinary: profile.qemu.binary,
    checks: observation.checks.checks,
    phases: observation.phases,
    releases: [],
    timings: [],
    samples: observation.sampler.samples,
    sampling: { hostRateHz: opts.hostRateHz ?? 20, guestRateHz: opts.guestRateHz ?? 5, hostOverruns: 0, gaps: 0 },
    resultsDir,
  };
  // The scanner tells the lab's own processes by its name, once it has one.
  const scanner = new ProcessScanner(() => run.lab?.name);
  const run: Run = {
    def,
    opts,
    progress,
    observation,
    report,
    scanner,
    faults,
    tcePathJudged,
    pressureAtStart: readPressure(),
    guestModules,
  };
  return { run, profile, image };
}

interface Launched {
  lab: Lab;
  /** The host sample taken before QEMU existed. */
  hostBaseline: Sample;
  /** How far an attributed counter's baseline could be off, when it could not be read with the neighbours still. */
  baselineSpread: HostBaseline['spread'];
  /** The neighbours' VmPin one by one at the baseline (pid → kB). */
  baselineNeighbourPins: Record<number, number>;
}

/**
 * The lab host is opened first (where it is a guest, the kvm-lab-host, it boots here and is the host from then on:
 * its counters, its baseline); the host baseline is taken before QEMU exists; then the lab starts (cold, or from a
 * snapshot).
 */
async function launch(run: Run, profile: Profile, image: GuestImage): Promise<Launched> {
  const { observation, progress, report, opts } = run;
  const { sampler } = observation;
  const labHost = await openLabHost(run.def, profile, image, {
    progress,
    runtimeRoot: opts.runtimeRoot,
    snapshots: opts.snapshots,
    scanner: run.scanner,
    labCgroup: () => run.lab?.cgroup,
    phase: (name) => observation.phase(name),
    observeLab: (lab, label) => observation.observeLab(lab, label),
    hostRestored: run.def.labHostRestored?.(opts.options ?? {}),
  });
  run.labHost = labHost;
  report.labHost = labHost.described;
  sampler.start('host', labHost.probe, {
    rateHz: report.sampling.hostRateHz,
    pid: () => (run.lab?.process.running ? run.lab.process.pid : undefined),
  });
  let lab: Lab;
  let baseline: Omit<Launched, 'lab'>;
  try {
    baseline = await readBaseline(run, labHost);
    observation.phase('launch');
    // The seeded fault of a restored lab: its devices that QEMU does not migrate keep the reset configuration.
    const skipConfigRestore = run.faults.has('skip-config-restore') ? 'seeded fault skip-config-restore' : undefined;
    lab = await labHost.launch(profile, { progress, coldBecause: run.def.bootsCold, skipConfigRestore });
  } catch (err) {
    await sampler.stop();
    await labHost.dispose(true, join(report.resultsDir, 'artifacts', 'lab-host'), progress);
    throw err;
  }
  run.lab = lab;
  report.qemuPid = lab.process.pid;
  report.labStart = lab.start;
  report.qemuVersion = lab.qmp.qemuVersion;
  observation.watchLab(lab);
  return { lab, ...baseline };
}

/** The host's counters before QEMU exists, read where they hold still (host-baseline.ts). */
async function readBaseline(run: Run, labHost: LabHost): Promise<Omit<Launched, 'lab'>> {
  const { sampler } = run.observation;
  const first = await sampler.waitFor('host', () => true, { after: 0, timeoutMs: FIRST_SAMPLE_CEILING_MS });
  if (!first) throw new TcelabError('sample the host counters', `no sample within ${FIRST_SAMPLE_CEILING_MS / 1000} s`);
  const { sample: hostBaseline, spread: baselineSpread } = await readHostBaseline(sampler, first, {
    mlockedByCgroup: labHost.mlockedByCgroup(),
  });
  // Who pinned what at the baseline: a neighbour whose VmPin overstates its pins lowers the lab's part until it leaves.
  const baselineNeighbourPins = labHost.neighbourPins();
  run.observation.phase('baseline');
  return { hostBaseline, baselineSpread, baselineNeighbourPins };
}

/** The guest comes up, its agent answers, guest sampling starts, and the scenario runs. */
async function runSteps(run: Run, { lab, hostBaseline }: Launched, session: GuestSession): Promise<void> {
  const { observation, progress, report, def, opts } = run;
  report.hostMemlockLimit = await run.labHost!.probe.memlockLimit(lab.process.pid);
  const init = await lab.waitForGuestInit(progress);
  report.guestKernel = init.kernelRelease;
  report.spawnToInitMs = init.spawnToInitMs;
  observation.phase('guest init');
  const agent = await lab.agent(progress);
  await session.agentUp(agent);
  observation.phase('agent ready');
  const guestProbe = new ProcCountersProbe(new AgentHost(agent));
  let guestPid: number | undefined;
  observation.sampler.start('guest', guestProbe, { rateHz: report.sampling.guestRateHz, pid: () => guestPid });
  const ctx: ScenarioContext = {
    lab,
    agent,
    profile: lab.profile,
    checks: observation.checks,
    progress,
    phase: (name) => observation.phase(name),
    sampler: observation.sampler,
    guestProbe,
    hostBaseline,
    options: opts.options ?? {},
    releases: report.releases,
    timings: report.timings,
    ddw: new HostDdwView(lab.qmp, lab.process.trace.ddw, lab.profile.phbs),
    observeLab: (other, label) => observation.observeLab(other, label),
    watchGuestPid: (pid) => {
      guestPid = pid;
    },
    shutdown: async (method) => (report.shutdown = await session.shutdown(method)),
    seeded: (fault) => run.faults.has(fault),
    keepGuestPins: (kept) => {
      session.keptPins = kept;
    },
    expectKernelReport: (e) => {
      session.expectedReports.push(e);
    },
    signal: opts.signal,
    kernel: report.kernel!,
    guestModule: (name) => {
      const m = run.guestModules.get(name);
      if (!m) throw new TcelabError(`guest module ${name}`, `scenario ${def.name} did not declare it (guestModules), so it was not built`);
      return m;
    },
  };
  const start = lab.start.how === 'restored' ? `restored from snapshot ${lab.start.snapshot}` : `booted cold: ${lab.start.why}`;
  progress.info(`scenario ${def.name} on ${lab.profile.name} (guest ${init.kernelRelease}, QEMU ${lab.qmp.qemuVersion}; ${start})`);
  await def.run(ctx);
}

/** Whether the steps passed or not, the guest goes away properly, and the host and the guest's kernel log are judged. */
async function judge(
  run: Run,
  { lab, hostBaseline, baselineSpread, baselineNeighbourPins }: Launched,
  session: GuestSession,
): Promise<void> {
  const { observation, report, progress, opts } = run;
  try {
    if (!report.shutdown && lab.process.running) {
      // A panicked guest cannot act on a power-down request, and an interrupted run must end now: quit at once.
      const method = lab.panic || opts.signal?.aborted ? 'quit' : 'powerdown';
      report.shutdown = await session.shutdown(method);
      if (!report.error) {
        observation.checks.equal(
          'guest powered off cleanly',
          report.shutdown.effective,
          'powerdown',
          report.shutdown.escalations.join('; ') || undefined,
        );
      }
    }
    await observation.sampler.stop('guest');
    const releases = await judgeHostRelease({
      sampler: observation.sampler,
      labHost: run.labHost!,
      baseline: hostBaseline,
      baselineSpread,
      baselineNeighbourPins,
      checks: observation.checks,
      lab,
      timeoutMs: opts.releaseTimeoutMs ?? 10_000,
      mlockedToleranceKb: opts.mlockedToleranceKb ?? 1024,
      progress,
      ...(run.faults.has('assume-4k-host-pages') ? { assumedPageKb: 4 } : {}),
    });
    report.releases.push(...releases);
    observation.phase('baseline regained');
    if (run.tcePathJudged) judgeTcePath(lab.process.trace.tcePath, lab.profile, observation.checks, lab.process.stderr());
  } catch (err) {
    report.error = `${report.error ? `${report.error}; ` : ''}${describeError(err)}`;
    observation.checks.record('lab torn down and judged', false, 'no error', describeError(err));
  } finally {
    session.recordKernelLogVerdict();
    // A report a step provokes on purpose (a known defect) may come from the lab host's kernel: the KVM host's TCE code.
    await judgeHostKernelLog(run.labHost!, observation.checks, session.expectedReports);
  }
}

/** QEMU is reaped, sampling ends, the lab's artifacts are kept and the report files written. */
async function finish(run: Run, lab: Lab): Promise<void> {
  const { observation, report } = run;
  if (lab.process.running) lab.process.kill('SIGKILL');
  await lab.process.exited;
  await observation.sampler.stop();
  report.sampling.hostOverruns = observation.sampler.overruns;
  report.sampling.gaps = observation.sampler.gaps;
  report.sampling.guestEndedBecause = observation.sampler.endedBecause('guest');
  report.passed = observation.checks.passed && !report.error;
  if (!report.passed) lab.failed = true;
  await lab.dispose({ artifactsTo: join(report.resultsDir, 'artifacts') });
  await run.labHost!.dispose(!report.passed, join(report.resultsDir, 'artifacts', 'lab-host'), run.progress).catch((err) => {
    report.error = `${report.error ? `${report.error}; ` : ''}could not tear the lab host down: ${describeError(err)}`;
    report.passed = false;
  });
  report.labStart = lab.start;
  report.durationMs = Date.now() - observation.t0;
  // What the machine went through meanwhile: a slow or failed run on a machine that stalled says so.
  const pressureAtEnd = readPressure();
  if (run.pressureAtStart && pressureAtEnd) report.hostPressure = pressureOverRun(run.pressureAtStart, pressureAtEnd, report.durationMs);
  observation.done(report.passed);
  await run.opts.writeResults?.(report).catch((err) => {
    report.error = `${report.error ? `${report.error}; ` : ''}could not write the results: ${(err as Error).message}`;
    report.passed = false;
  });
}
