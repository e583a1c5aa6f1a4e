import type { ProcessScanner } from '../../probes/host-attribution.js';
import type { ProcCountersProbe } from '../../probes/proc.js';
import type { Sample } from '../../probes/sampler.js';
import type { Lab, LabStartOptions, LaunchOptions } from '../../lab/lab.js';
import type { Profile } from '../../qemu/profile.js';
import type { Progress } from '../../util/progress.js';
import type { ScenarioReport } from '../scenario.js';
import type { HostJudgements } from './release-judgements.js';

/** What outlived QEMU on the lab host: how many, described, and why that is the lab's; or why it could not be asked. */
export type Leftovers = { count: number; described: string; why: string } | { unknown: string };

/** The lab host's kernel log since the run began, or why it is not judged. */
export type HostKernelLog = { text: string; source: string } | { notJudged: string };

/**
 * The machine that runs the lab's QEMU, as a run needs it: it launches the lab, its counters are sampled and its
 * baseline read, it judges what QEMU gave back and what outlived it, its kernel log is read, and it is disposed of
 * last. Two kinds: this machine or a real POWER host (machine-lab-host.ts), and a guest that hosts labs, the emulated
 * KVM lab host (guest-lab-host.ts). The runner and the release verdicts ask it; they never ask which kind it is.
 */
export interface LabHost {
  /** Its counters (/proc): sampled as the 'host' source. */
  readonly probe: ProcCountersProbe;
  /** What the report says of the lab host, where it is not this machine. */
  readonly described?: NonNullable<ScenarioReport['labHost']>;
  /** Whether the lab's locked memory is read exactly, on its own memory cgroup (then the baseline need not wait for it). */
  mlockedByCgroup(): boolean;
  /** The neighbours' VmPin one by one (pid → kB), taken with the baseline. */
  neighbourPins(): Record<number, number>;
  launch(profile: Profile, opts: { progress: Progress } & LabStartOptions): Promise<Lab>;
  /** The base page size, in kB, of the kernel that pins the lab's guest RAM: FOLL_PIN counts its pages. */
  pageKb(): Promise<number>;
  /** The counters that must return to baseline after QEMU exits, and how the lab's part of each is told apart. */
  judgements(lab: Lab, baseline: Sample, baselineNeighbourPins: Record<number, number>, mlockedToleranceKb: number): HostJudgements;
  /**
   * Once QEMU has exited: resolves when the lab host's counters are at rest — whatever QEMU's exit set in motion has
   * landed (RCU barriers in a lab host that is a guest: scenario/guest-pins.ts) — so that a release that will not come
   * is told then, not at the ceiling. Absent where no such event can be had (this machine's kernel is not ours to probe).
   */
  atRest?(): Promise<unknown>;
  /** Whatever of the lab still holds pinned or locked memory after QEMU exited. */
  leftovers(lab: Lab): Promise<Leftovers>;
  /** What its kernel logged during the run, where its kernel is under test. */
  kernelLog(): Promise<HostKernelLog>;
  /** Gone last, after the lab: its artifacts (where it has any) kept beside the lab's. */
  dispose(failed: boolean, artifactsTo: string, progress: Progress): Promise<void>;
}

export interface LabHostOptions extends Pick<LaunchOptions, 'runtimeRoot' | 'snapshots'> {
  progress: Progress;
  scanner: ProcessScanner;
  /** The lab's memory cgroup on this machine, once there is a lab and it has one. */
  labCgroup: () => Lab['cgroup'];
  /** The run's phases and labs, for the timeline. */
  phase: (name: string) => void;
  observeLab: (lab: Lab, label: string) => void;
  /** The lab host, where it is a guest, must be a restored machine: why (ScenarioDefinition.labHostRestored). */
  hostRestored?: string;
}
