import type { Lab, ShutdownMethod, ShutdownReport } from '../qemu/lab.js';
import type { AgentClient } from '../agent/agent-client.js';
import type { Profile } from '../qemu/profile.js';
import type { Progress } from '../util/progress.js';
import type { CheckRecorder } from './checks.js';
import type { HostDdwView } from '../ddw/host-view.js';
import type { PinnedPageSampler, Sample } from '../probes/sampler.js';
import type { ProcCountersProbe } from '../probes/proc.js';
import type { ReleaseVerdict } from '../probes/release.js';

/** A named instant in a run (launch, registered, shutdown requested…), in ms since the run began. */
export interface Phase {
  name: string;
  atMs: number;
  wallTime: string;
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
  shutdown(method: ShutdownMethod | 'agent'): Promise<ShutdownReport>;
  /** Per-step durations (hotplug steps…) for the report. */
  timings: Array<{ step: string; ms: number }>;
  /** Release verdicts the scenario measured (they go into the report and the timeline). */
  releases: ReleaseVerdict[];
  options: Record<string, number | string | boolean>;
}

export interface ScenarioDefinition {
  name: string;
  description: string;
  defaultProfile: string;
  /** Adjusts the profile before launch (e.g. lock guest RAM so the host has pages to account). */
  adjustProfile?(profile: Profile): Profile;
  run(ctx: ScenarioContext): Promise<void>;
}
