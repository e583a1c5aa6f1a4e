import { mkdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { Lab, type ShutdownMethod, type ShutdownReport } from '../qemu/lab.js';
import { loadProfile } from '../qemu/profile.js';
import { requireGuestImage } from '../image/image-builder.js';
import { HostDdwView } from '../ddw/host-view.js';
import { CheckRecorder, type Check } from './checks.js';
import type { Phase, ScenarioContext, ScenarioDefinition } from './scenario.js';
import { describeError, TcelabError } from '../util/errors.js';
import { silentProgress, type Progress } from '../util/progress.js';
import { installInterruptHandlers } from '../cli/interrupt.js';
import { PinnedPageSampler, type Sample } from '../probes/sampler.js';
import { ProcCountersProbe } from '../probes/proc.js';
import { AgentHost, LocalHost } from '../host/host.js';
import { awaitRelease, type ReleaseVerdict } from '../probes/release.js';
import type { PinCounters } from '../probes/proc.js';
import { LAB_MARKER_ENV, ProcessScanner, describeProcessMemory } from '../probes/host-attribution.js';
import { writeReportFiles } from '../report/write.js';
import type { LiveServer } from '../live/live-server.js';
import { validateScenarioOptions } from './seeded-faults.js';
import { judgeGuestBalance, takeGuestBalanceBaseline, type GuestBalanceBaseline, type KeptGuestPins } from './guest-balance.js';
import { judgeKernelLog, scanKernelLog, KERNEL_REPORT_NAMES, type ExpectedKernelReport } from './kernel-log.js';

export interface ScenarioReport {
  scenario: string;
  profile: string;
  options: Record<string, number | string | boolean>;
  passed: boolean;
  startedAt: string;
  durationMs: number;
  guestKernel?: string;
  qemuVersion?: string;
  qemuPid?: number;
  spawnToInitMs?: number;
  /** How the lab came up: restored from a snapshot (which), or cold (why). */
  labStart?: import('../qemu/lab.js').LabStart;
  guestRamMiB?: number;
  hostMemlockLimit?: { soft: number; hard: number };
  checks: Check[];
  phases: Phase[];
  releases: ReleaseVerdict[];
  timings: Array<{ step: string; ms: number }>;
  samples: Sample[];
  sampling: { hostRateHz: number; guestRateHz: number; hostOverruns: number; gaps: number; guestEndedBecause?: string };
  shutdown?: ShutdownReport;
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
  /** 'use': start from a saved machine when there is one (--snapshots); default: as TCELAB_SNAPSHOTS says, else cold. */
  snapshots?: 'use' | 'off';
}

export function defaultResultsDir(scenario: string): string {
  const stamp = new Date().toISOString().replace(/[-:]/g, '').replace(/\..*$/, '').replace('T', '-');
  return resolve('results', `${scenario}-${stamp}`);
}

/**
 * Runs one scenario on a fresh lab: host baseline, launch, boot, agent, the
 * scenario's steps, shutdown, host release verdicts, teardown. Writes
 * results.json, junit.xml, timeline.svg and the artifacts (console log, QMP
 * and agent transcripts, QEMU stderr) to the results dir, pass or fail.
 */
export async function runScenario(def: ScenarioDefinition, opts: RunOptions = {}): Promise<ScenarioReport> {
  const progress = opts.progress ?? silentProgress;
  // Bad options are refused before anything starts.
  const faults = validateScenarioOptions(def, opts.options ?? {});
  const resultsDir = opts.resultsDir ?? defaultResultsDir(def.name);
  await mkdir(resultsDir, { recursive: true });
  const hostRateHz = opts.hostRateHz ?? 20;
  const guestRateHz = opts.guestRateHz ?? 5;
  const releaseTimeoutMs = opts.releaseTimeoutMs ?? 10_000;
  const t0 = Date.now();
  const phases: Phase[] = [];
  const sampler = new PinnedPageSampler(t0);
  const live = opts.live;
  const phase = (name: string) => {
    const atMs = sampler.now();
    phases.push({ name, atMs, wallTime: new Date().toISOString() });
    live?.publish({ type: 'phase', name, atMs });
    return atMs;
  };
  const checks = new CheckRecorder(
    progress,
    live ? (c) => live.publish({ type: 'check', name: c.name, status: c.status, measured: c.measured, expected: c.expected }) : undefined,
  );
  if (live) {
    live.publish({ type: 'hello', scenario: def.name, profile: opts.profile ?? def.defaultProfile });
    const MiB = 1024 * 1024;
    sampler.on('sample', (s: Sample) =>
      live.publish({
        type: 'sample',
        t: s.t,
        source: s.source,
        pinnedMiB: (s.counters.pinnedPages * 4096) / MiB,
        mlockedMiB: (s.counters.mlockedKb * 1024) / MiB,
        ...(s.counters.vmLckKb !== undefined ? { vmLckMiB: (s.counters.vmLckKb * 1024) / MiB } : {}),
      }),
    );
  }
  const report: ScenarioReport = {
    scenario: def.name,
    profile: opts.profile ?? def.defaultProfile,
    options: opts.options ?? {},
    passed: false,
    startedAt: new Date(t0).toISOString(),
    durationMs: 0,
    checks: checks.checks,
    phases,
    releases: [],
    timings: [],
    samples: sampler.samples,
    sampling: { hostRateHz, guestRateHz, hostOverruns: 0, gaps: 0 },
    resultsDir,
  };
  let profile = await loadProfile(opts.profile ?? def.defaultProfile);
  if (def.adjustProfile) profile = def.adjustProfile(profile, opts.options ?? {});
  report.guestRamMiB = profile.qemu.memoryMiB;
  const image = await requireGuestImage(profile.guest.image);

  // Host baseline: before QEMU exists.
  let lab: Lab | undefined;
  // Host samples say how much of the system-wide counters the lab's neighbours account themselves.
  const scanner = new ProcessScanner(() => lab?.name);
  const hostProbe = new ProcCountersProbe(new LocalHost(), scanner);
  sampler.start('host', hostProbe, { rateHz: hostRateHz, pid: () => (lab?.process.running ? lab.process.pid : undefined) });
  const hostBaseline = await sampler.waitFor('host', () => true, { after: 0, timeoutMs: 5000 });
  if (!hostBaseline) throw new TcelabError('sample the host counters', 'no sample within 5 s');
  phase('baseline');

  phase('launch');
  try {
    lab = await Lab.launch(profile, { image, progress, runtimeRoot: opts.runtimeRoot, snapshots: opts.snapshots });
  } catch (err) {
    await sampler.stop();
    throw err;
  }
  const theLab = lab;
  report.qemuPid = lab.process.pid;
  report.labStart = lab.start;
  report.qemuVersion = lab.qmp.qemuVersion;
  lab.qmp.onEvent((e) => {
    live?.publish({ type: 'event', event: e.event, data: e.data, atMs: sampler.now() });
    if (['SHUTDOWN', 'GUEST_PANICKED', 'STOP', 'RESET'].includes(e.event)) phase(`${e.event} event`);
  });
  // A lab the scenario starts itself (the inner lab of a nested host): its QMP events go to the live view too.
  const observeLab = (other: Lab, label: string) =>
    other.qmp.onEvent((e) => live?.publish({ type: 'event', event: `${label}: ${e.event}`, data: e.data, atMs: sampler.now() }));
  void lab.process.exited.then(() => phase('process exit'));
  const uninstall = opts.handleSignals
    ? installInterruptHandlers(async () => {
        theLab.failed = true;
        await sampler.stop();
        await theLab.dispose({ artifactsTo: join(resultsDir, 'artifacts') });
      })
    : () => {};

  let guestPid: number | undefined;
  let agentForShutdown: import('../agent/agent-client.js').AgentClient | undefined;
  let balanceBaseline: GuestBalanceBaseline | undefined;
  let keptPins: KeptGuestPins | undefined = def.keepsGuestPins ? { reason: def.keepsGuestPins } : undefined;
  const expectedReports: ExpectedKernelReport[] = [];
  /** The guest's own kernel log, read before it goes (the console shows only what its loglevel lets through). */
  let guestDmesg = '';
  // Just before the guest goes: its pins and locked memory are judged against the agent-up baseline,
  // and its kernel log is read while the agent can still read it.
  const beforeGuestGoes = async () => {
    const agent = agentForShutdown;
    if (!agent || !balanceBaseline || theLab.panic || !theLab.process.running) return;
    const baseline = balanceBaseline;
    balanceBaseline = undefined;
    await progress
      .step('judge the guest balance (pins and locked memory back to the agent-up baseline)', async () => {
        await judgeGuestBalance(agent, baseline, checks, progress, keptPins);
      })
      .catch((err) => checks.record('guest: balance judged before shutdown', false, 'the agent answers', describeError(err)));
    guestDmesg = await agent.exec(['dmesg'], 10_000).then(
      (r) => r.stdout,
      () => '',
    );
  };
  const shutdown = async (method: ShutdownMethod | 'agent'): Promise<ShutdownReport> => {
    await beforeGuestGoes();
    phase(`shutdown requested (${method})`);
    let sd: ShutdownReport;
    if (method === 'agent' && agentForShutdown) {
      // The agent replies, then powers the guest off; escalation as for powerdown.
      await agentForShutdown.poweroff().catch(() => {});
      sd = await theLab.shutdown('powerdown', progress, { skipRequest: true });
      sd.requested = 'agent' as ShutdownMethod;
    } else {
      sd = await theLab.shutdown(method === 'agent' ? 'powerdown' : method, progress);
    }
    report.shutdown = sd;
    return sd;
  };
  try {
    report.hostMemlockLimit = await hostProbe.memlockLimit(lab.process.pid);
    const init = await lab.waitForGuestInit(progress);
    report.guestKernel = init.kernelRelease;
    report.spawnToInitMs = init.spawnToInitMs;
    phase('guest init');
    const agent = await lab.agent(progress);
    agentForShutdown = agent;
    balanceBaseline = await takeGuestBalanceBaseline(agent);
    phase('agent ready');
    const guestProbe = new ProcCountersProbe(new AgentHost(agent));
    sampler.start('guest', guestProbe, { rateHz: guestRateHz, pid: () => guestPid });
    const ctx: ScenarioContext = {
      lab,
      agent,
      profile,
      checks,
      progress,
      phase,
      sampler,
      guestProbe,
      hostBaseline,
      options: opts.options ?? {},
      releases: report.releases,
      timings: report.timings,
      ddw: new HostDdwView(lab.qmp, lab.process.ddwTrace, profile.phbs),
      observeLab,
      watchGuestPid: (pid) => {
        guestPid = pid;
      },
      shutdown,
      seeded: (fault) => faults.has(fault),
      keepGuestPins: (kept) => {
        keptPins = kept;
      },
      expectKernelReport: (e) => {
        expectedReports.push(e);
      },
    };
    const start = lab.start.how === 'restored' ? `restored from snapshot ${lab.start.snapshot}` : `booted cold: ${lab.start.why}`;
    progress.info(`scenario ${def.name} on ${profile.name} (guest ${init.kernelRelease}, QEMU ${lab.qmp.qemuVersion}; ${start})`);
    await def.run(ctx);
  } catch (err) {
    report.error = describeError(err);
    checks.record('scenario ran to the end', false, 'no error', report.error);
  }
  try {
    // Whether the steps passed or not, the guest goes away properly and the host is judged.
    if (!report.shutdown && lab.process.running) {
      // A panicked guest cannot act on a power-down request: quit at once.
      const sd = await shutdown(lab.panic ? 'quit' : 'powerdown');
      if (!report.error) checks.equal('guest powered off cleanly', sd.effective, 'powerdown', sd.escalations.join('; ') || undefined);
    }
    await sampler.stop('guest');
    await hostReleaseChecks(
      report,
      sampler,
      scanner,
      hostBaseline,
      checks,
      lab,
      releaseTimeoutMs,
      opts.mlockedToleranceKb ?? 1024,
      progress,
    );
  } catch (err) {
    report.error = `${report.error ? `${report.error}; ` : ''}${describeError(err)}`;
    checks.record('lab torn down and judged', false, 'no error', describeError(err));
  } finally {
    uninstall();
    // A kernel validation run must never miss a kernel report, whatever the scenario checked or how it ended:
    // the console (everything up to the end, a panic included) and the guest's dmesg (read before shutdown).
    const logVerdict = judgeKernelLog(scanKernelLog(`${lab.process.console.tail(100_000)}\n${guestDmesg}`), expectedReports);
    checks.record(
      `guest kernel logged no ${KERNEL_REPORT_NAMES.join(', ')}`,
      logVerdict.pass,
      'none',
      logVerdict.measured,
      guestDmesg ? 'console and dmesg' : 'console only (dmesg was not read: the agent was gone)',
      logVerdict.knownDefect,
    );
    if (lab.process.running) lab.process.kill('SIGKILL');
    await lab.process.exited;
    if (!report.releases.length && !report.error) phase('baseline regained');
    await sampler.stop();
    report.sampling.hostOverruns = sampler.overruns;
    report.sampling.gaps = sampler.gaps;
    report.sampling.guestEndedBecause = sampler.endedBecause('guest');
    report.passed = checks.passed && !report.error;
    if (!report.passed) lab.failed = true;
    await lab.dispose({ artifactsTo: join(resultsDir, 'artifacts') });
    report.labStart = lab.start;
    report.durationMs = Date.now() - t0;
    live?.publish({ type: 'done', passed: report.passed });
    await writeReportFiles(report).catch((err) => {
      report.error = `${report.error ? `${report.error}; ` : ''}could not write the results: ${(err as Error).message}`;
      report.passed = false;
    });
  }
  return report;
}

/**
 * After QEMU is gone, the host's pinned pages and Mlocked must return to the
 * baseline taken before launch; while it ran, the host must have accounted
 * what the profile implies (locked guest RAM, or VFIO-pinned guest RAM).
 */
async function hostReleaseChecks(
  report: ScenarioReport,
  sampler: PinnedPageSampler,
  scanner: ProcessScanner,
  baseline: Sample,
  checks: CheckRecorder,
  lab: Lab,
  timeoutMs: number,
  mlockedToleranceKb: number,
  progress: Progress,
): Promise<void> {
  const exit = await lab.process.exited;
  const exitT = exit.at - sampler.t0;
  const ramKb = lab.profile.qemu.memoryMiB * 1024;
  const running = sampler.of('host').filter((s) => s.pid === lab.process.pid);
  if (lab.profile.qemu.memLock) {
    const peakLck = Math.max(0, ...running.map((s) => s.counters.vmLckKb ?? 0));
    checks.atLeast(
      'host: QEMU VmLck while running covers guest RAM (mem-lock=on)',
      peakLck,
      ramKb,
      `kB, guest RAM ${lab.profile.qemu.memoryMiB} MiB`,
    );
    const peakMlocked = Math.max(0, ...running.map((s) => s.counters.mlockedKb)) - baseline.counters.mlockedKb;
    checks.atLeast('host: Mlocked grew by at least guest RAM while running', peakMlocked, ramKb, 'kB');
  }
  if (lab.profile.devices.some((d) => d.driver === 'vfio-pci')) {
    const ramPages = ramKb / 4;
    const peakPinned = Math.max(0, ...running.map((s) => s.counters.pinnedPages)) - baseline.counters.pinnedPages;
    checks.atLeast(
      'host: FOLL_PIN pages while running ≈ guest RAM (VFIO pre-registration)',
      peakPinned,
      Math.floor(ramPages * 0.9),
      'pages',
    );
  }
  // Judged on the part of each system-wide counter that no neighbour accounts for: a neighbour that
  // locks or pins memory meanwhile moves the raw counter and its own VmLck/VmPin alike.
  const judged = [
    {
      counter: 'unattributedPinnedPages',
      raw: 'pinnedPages',
      neighbours: 'neighbourPinnedKb',
      own: 'VmPin',
      label: 'pinned pages (FOLL_PIN)',
      unit: 'pages',
      tolerance: 0,
    },
    {
      counter: 'unattributedMlockedKb',
      raw: 'mlockedKb',
      neighbours: 'neighbourLockedKb',
      own: 'locked memory',
      label: 'Mlocked',
      unit: 'kB',
      tolerance: mlockedToleranceKb,
    },
  ] as const;
  const signed = (n: number) => `${n >= 0 ? '+' : ''}${n}`;
  for (const j of judged) {
    const v = await progress.step(`wait for host ${j.label} to return to baseline`, async (update) => {
      const timer = setInterval(() => {
        const last = sampler.of('host').at(-1)?.counters[j.counter] ?? 0;
        update(`${last} now, baseline ${baseline.counters[j.counter]}`, (sampler.now() - exitT) / timeoutMs);
      }, 200);
      try {
        // Only the lab's own leftovers fail it: a neighbour's release (an exited process's pins put late) ends below the baseline.
        // Attributing a neighbour's Mlocked share from its mappings is good to a fraction of a percent (seen: 4.5 MB
        // of a 2.26 GB mem-lock QEMU that left during a run): 1 % of the neighbours' change is allowed on top.
        const churn = (c: PinCounters) =>
          j.counter === 'unattributedMlockedKb'
            ? Math.abs((c.neighbourLockedKb ?? 0) - (baseline.counters.neighbourLockedKb ?? 0)) / 100
            : 0;
        return await awaitRelease(
          sampler,
          'host',
          j.counter,
          baseline,
          { name: 'QEMU exit', t: exitT },
          timeoutMs,
          j.tolerance,
          'not-above',
          churn,
        );
      } finally {
        clearInterval(timer);
      }
    });
    report.releases.push(v);
    const last = sampler.of('host').at(-1)?.counters;
    const rawDelta = (last?.[j.raw] ?? 0) - baseline.counters[j.raw];
    const neighbourDelta = (last?.[j.neighbours] ?? 0) - (baseline.counters[j.neighbours] ?? 0);
    checks.record(
      `host: ${j.label} back to baseline after QEMU exit (neighbours' own accounted)`,
      v.returned,
      `≤ ${v.baseline}${j.tolerance ? ` + ${j.tolerance}` : ''}${j.counter === 'unattributedMlockedKb' ? " + 1 % of the neighbours' change" : ''}`,
      v.final,
      `${v.returned ? `release latency ${v.latencyMs} ms from process exit, peak ${v.peak}` : `not back within ${timeoutMs} ms, peak ${v.peak}`}; ` +
        `system-wide ${signed(rawDelta)} ${j.unit}, the neighbours' own ${j.own} ${signed(neighbourDelta)} kB`,
    );
  }
  // Whatever the lab started must be gone with QEMU: a helper that lives on keeps its locked and pinned memory.
  const leftovers = scanner.scan().lab.filter((p) => p.pid !== lab.process.pid);
  checks.record(
    'host: no process of the lab outlives QEMU',
    leftovers.length === 0,
    'none',
    leftovers.length ? leftovers.map(describeProcessMemory).join('; ') : 'none',
    leftovers.length ? `processes carrying ${lab.name}'s marker (${LAB_MARKER_ENV}) are still alive after QEMU exited` : undefined,
  );
  report.phases.push({ name: 'baseline regained', atMs: sampler.now(), wallTime: new Date().toISOString() });
}
