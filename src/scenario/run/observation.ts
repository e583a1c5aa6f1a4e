import type { LiveServer } from '../../live/live-server.js';
import { PinnedPageSampler, type Sample } from '../../probes/sampler.js';
import type { Lab } from '../../lab/lab.js';
import type { Progress } from '../../util/progress.js';
import { CheckRecorder } from '../checks.js';
import type { Phase } from '../scenario.js';

const MiB = 1024 * 1024;

/** QMP events that mark a phase of the run (the rest only reach the live view). */
const PHASE_EVENTS = new Set(['SHUTDOWN', 'GUEST_PANICKED', 'STOP', 'RESET']);

/**
 * What a run sees, in one place: the samples, the phases and the checks, each published to the live view
 * (when there is one) as it happens. Every phase goes through phase(), so the report, the timeline and the
 * live view always agree.
 */
export class RunObservation {
  readonly t0 = Date.now();
  readonly sampler = new PinnedPageSampler(this.t0);
  readonly phases: Phase[] = [];
  readonly checks: CheckRecorder;

  constructor(
    progress: Progress,
    private readonly live: LiveServer | undefined,
    hello: { scenario: string; profile: string },
  ) {
    this.checks = new CheckRecorder(
      progress,
      live ? (c) => live.publish({ type: 'check', name: c.name, status: c.status, measured: c.measured, expected: c.expected }) : undefined,
    );
    if (!live) return;
    live.publish({ type: 'hello', ...hello });
    this.sampler.on('sample', (s: Sample) =>
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

  /** Marks a named instant of the run; returns its time in ms since the run began. */
  phase(name: string): number {
    const atMs = this.sampler.now();
    this.phases.push({ name, atMs, wallTime: new Date().toISOString() });
    this.live?.publish({ type: 'phase', name, atMs });
    return atMs;
  }

  /** The run's own lab: its QMP events reach the live view, the ones that matter become phases, and so does its exit. */
  watchLab(lab: Lab): void {
    lab.qmp.onEvent((e) => {
      this.live?.publish({ type: 'event', event: e.event, data: e.data, atMs: this.sampler.now() });
      if (PHASE_EVENTS.has(e.event)) this.phase(`${e.event} event`);
    });
    void lab.process.exited.then(() => this.phase('process exit'));
  }

  /** A lab the scenario started itself (the inner lab of a nested host): its QMP events go to the live view, labelled. */
  observeLab(lab: Lab, label: string): void {
    lab.qmp.onEvent((e) => this.live?.publish({ type: 'event', event: `${label}: ${e.event}`, data: e.data, atMs: this.sampler.now() }));
  }

  done(passed: boolean): void {
    this.live?.publish({ type: 'done', passed });
  }
}
