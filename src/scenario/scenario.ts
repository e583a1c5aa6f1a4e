import type { GuestModule } from '../kbuild/guest-module.js';
import type { PressureOverRun } from '../probes/pressure.js';
import type { Lab } from '../lab/lab.js';
import type { LabStart } from '../lab/lab-snapshot.js';
import type { ShutdownMethod, ShutdownReport } from '../lab/shutdown.js';
import type { AgentClient } from '../agent/agent-client.js';
import type { Profile } from '../qemu/profile.js';
import type { Progress } from '../util/progress.js';
import type { Check, CheckRecorder } from './checks.js';
import type { HostDdwView } from '../ddw/host-view.js';
import type { PinnedPageSampler, Sample } from '../probes/sampler.js';
import type { ProcCountersProbe } from '../probes/proc.js';
import type { ReleaseVerdict } from '../probes/release.js';
import type { Spec } from '../util/validate.js';
import type { KeptGuestPins } from './guest-balance.js';
import type { ExpectedKernelReport } from './kernel-log.js';
import type { KernelFacts, KernelRequirements } from '../kernel/kernel-facts.js';

/** A named instant in a run (launch, registered, shutdown requested…), in ms since the run began. */
export interface Phase {
  name: string;
  atMs: number;
  wallTime: string;
}

/** How a run may shut its guest down: a lab method, or the agent powering the guest off from inside. */
export type GuestShutdownMethod = ShutdownMethod | 'agent';

/** Everything a run measured and decided; results.json is this object. */
export interface ScenarioReport {
  scenario: string;
  profile: string;
  options: Record<string, number | string | boolean>;
  passed: boolean;
  startedAt: string;
  durationMs: number;
  guestKernel?: string;
  /** The kernel under test as its image recorded it: source (package and version), page size, config values, modules. */
  kernel?: KernelFacts;
  qemuVersion?: string;
  /** The QEMU binary the lab ran (the profile's, or --qemu). */
  qemuBinary?: string;
  qemuPid?: number;
  spawnToInitMs?: number;
  /** How the lab came up: restored from a snapshot (which), or cold (why). */
  labStart?: LabStart;
  guestRamMiB?: number;
  hostMemlockLimit?: { soft: number; hard: number };
  /**
   * Where the lab's host is itself a guest (kvm-lab-host): that machine, whose kernel and QEMU are inputs too. The
   * host verdicts are judged in it; hostPressure stays this machine's.
   */
  labHost?: { profile: string; kernel: string; qemuVersion: string; spawnToAgentMs: number; labStart?: LabStart };
  /** Shares of the run the whole machine spent stalled (PSI), where it has PSI: context for a slow or failed run. */
  hostPressure?: PressureOverRun;
  /** The guest modules built for this run's kernel: what from, the options forced, the build time; or why none. */
  guestModules?: Array<{
    name: string;
    vermagic?: string;
    source?: string;
    forced?: string[];
    buildMs?: number;
    preparedMs?: number;
    notApplicable?: string;
  }>;
  checks: Check[];
  phases: Phase[];
  releases: ReleaseVerdict[];
  timings: Array<{ step: string; ms: number }>;
  samples: Sample[];
  sampling: { hostRateHz: number; guestRateHz: number; hostOverruns: number; gaps: number; guestEndedBecause?: string };
  /** requested is what the run asked for ('agent' included); effective what the lab did. */
  shutdown?: Omit<ShutdownReport, 'requested'> & { requested: GuestShutdownMethod };
  error?: string;
  resultsDir: string;
}

export interface ScenarioContext {
  lab: Lab;
  agent: AgentClient;
  profile: Profile;
  checks: CheckRecorder;
  progress: Progress;
  ddw: HostDdwView;
  sampler: PinnedPageSampler;
  /** The guest's counters through the agent (same probe code as the host's). */
  guestProbe: ProcCountersProbe;
  /** The host sample taken before QEMU was launched. */
  hostBaseline: Sample;
  phase(name: string): number;
  /** Publishes the QMP events of a lab the scenario started itself (an inner lab) with the run's. */
  observeLab(lab: Lab, label: string): void;
  /** Which guest process's VmLck/VmPin the guest samples include. */
  watchGuestPid(pid: number | undefined): void;
  /** Shuts the lab down with phase markers; the runner then checks host release. */
  shutdown(method: GuestShutdownMethod): Promise<NonNullable<ScenarioReport['shutdown']>>;
  /** Per-step durations (hotplug steps…) for the report. */
  timings: Array<{ step: string; ms: number }>;
  /** Release verdicts the scenario measured (they go into the report and the timeline). */
  releases: ReleaseVerdict[];
  options: Record<string, number | string | boolean>;
  /**
   * Declares pins the guest will still hold at shutdown: on purpose (no
   * `pages`: the balance is not judged), or `pages` explained by a documented
   * defect (the balance check then reports that defect instead of failing).
   */
  keepGuestPins(kept: KeptGuestPins): void;
  /** Whether this run seeds the named fault (one of the definition's seedableFaults). */
  seeded(fault: string): boolean;
  /** A kernel report (WARNING…) this run provokes on purpose, as a documented defect. */
  expectKernelReport(expected: ExpectedKernelReport): void;
  /**
   * Aborted when the run is interrupted (a signal): the runner then quits the lab while the scenario's code may still
   * be running; what the scenario cleans up after that is kept as artifacts, as for any failed run.
   */
  signal?: AbortSignal;
  /** The kernel under test (the image's): its release, source package and version, page size. */
  kernel: KernelFacts;
  /** A guest module the definition declared (guestModules), built for this kernel: its .ko, or why it cannot be. */
  guestModule(name: string): GuestModule;
}

export interface ScenarioDefinition {
  name: string;
  description: string;
  defaultProfile: string;
  /** Adjusts the profile before launch (e.g. lock guest RAM so the host has pages to account). */
  adjustProfile?(profile: Profile, options: Record<string, number | string | boolean>): Profile;
  /**
   * The options a run takes (`--set k=v`, a `do` step's "options"), each with
   * its type and range: anything else, or a value out of range, is refused
   * before a lab starts.
   */
  optionSpecs?: Record<string, Spec>;
  /** Faults a run can seed (`--set seedFaults=a,b`): name → what it changes. See seeded-faults.ts. */
  seedableFaults?: Record<string, string>;
  /** What it needs of the guest kernel beyond VFIO sPAPR (e.g. RPA hotplug); a kernel without it is refused before launch. */
  requires?: KernelRequirements;
  /** The scenario shuts the guest down with pins held on purpose (why): the guest balance is not judged. */
  keepsGuestPins?: string;
  /**
   * The scenario launches the inner labs of a nested lab host itself (launchInnerLab): it runs on the outer machine
   * even with a profile whose inner machine boots (kvm-lab-host), where other scenarios run on the inner one.
   */
  drivesInnerLabs?: boolean;
  /** The scenario's lab boots cold, never from a saved machine: why (what a restored machine does wrong for it). */
  bootsCold?: string;
  /**
   * The run needs its lab host, where that is a guest (kvm-lab-host's outer machine), restored from a saved machine:
   * why, or undefined (whichever comes, the default). A host guest that boots cold and saves itself is then launched
   * again from that save. A seeded fault of what a restore loses needs it.
   */
  labHostRestored?(options: Record<string, number | string | boolean>): string | undefined;
  /**
   * Guest kernel modules the run needs (guest/<name>), built for the image's kernel before the lab starts: a build
   * that fails stops the run before anything starts; a kernel whose source is not served makes them not applicable.
   */
  guestModules?: string[];
  run(ctx: ScenarioContext): Promise<void>;
}
