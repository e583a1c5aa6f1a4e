import type { Lab } from '../qemu/lab.js';
import type { AgentClient } from '../agent/agent-client.js';
import type { Profile } from '../qemu/profile.js';
import type { Progress } from '../util/progress.js';
import type { CheckRecorder } from './checks.js';
import type { HostDdwView } from '../ddw/host-view.js';

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
  phase(name: string): void;
  /** Set by scenarios that shut the guest down themselves. */
  shutDown: boolean;
  options: Record<string, number | string | boolean>;
}

export interface ScenarioDefinition {
  name: string;
  description: string;
  defaultProfile: string;
  run(ctx: ScenarioContext): Promise<void>;
}
