import { join } from 'node:path';
import type { ScenarioContext } from './scenario.js';
import type { Lab } from '../lab/lab.js';
import type { Profile } from '../qemu/profile.js';
import type { VfioWorker } from '../agent/agent-client.js';
import { TcelabError } from '../util/errors.js';
import { launchInnerMachine } from './run/guest-lab-host.js';

/**
 * The inner lab of a nested lab host, for procedures and scenario steps alike:
 * launched in the guest through the agent (the Host the guest probe reads),
 * its runtime dir inside the outer lab's, its artifacts kept with the outer
 * lab's under inner/<label>/.
 */
export function innerProfile(ctx: ScenarioContext): Profile {
  if (!ctx.profile.inner) {
    throw new TcelabError(
      'inner lab',
      `profile ${ctx.profile.name} has no inner lab`,
      'run it with the nested-lab-host profile (or one with an "inner" section)',
    );
  }
  return ctx.profile.inner;
}

/** Launches the inner lab: the profile's inner section, or a changed copy of it (a seeded fault's). */
export async function launchInnerLab(ctx: ScenarioContext, profile: Profile = innerProfile(ctx)): Promise<Lab> {
  // An interrupted run starts no further inner lab: the runner is tearing the outer one down, and a lab launched
  // in the meantime would only race that teardown for its runtime dir.
  if (ctx.signal?.aborted) throw new TcelabError('launch an inner lab', 'not started: the run was interrupted');
  const lab = await launchInnerMachine(profile, ctx.guestProbe.host, ctx.lab.paths.dir, ctx.progress);
  ctx.observeLab(lab, `inner pid ${lab.process.pid}`);
  return lab;
}

export async function disposeInnerLab(ctx: ScenarioContext, lab: Lab, label: string): Promise<void> {
  // Normally the scenario disposes its inner labs while the outer guest still runs; when the run was interrupted
  // (the runner quits the outer lab while this code may still run) or the outer QEMU is gone, the inner lab's
  // runtime dir is kept as artifacts like any failed lab's.
  if (!ctx.lab.process.running || ctx.signal?.aborted) lab.failed = true;
  await lab.dispose({ artifactsTo: join(ctx.lab.paths.dir, 'inner', label.replace(/\W+/g, '-')) });
}

/**
 * The seeded fault: `worker` (a worker of the agent of the lab's host) takes duplicates of every /dev/vfio fd the
 * lab's QEMU holds (pidfd_getfd), as if they had been passed to it. Returns what it holds.
 */
export async function adoptInnerVfioFds(worker: VfioWorker, lab: Lab): Promise<string[]> {
  const fds = ((await lab.host.listDir(`/proc/${lab.process.pid}/fd`)) ?? []).filter((e) => e.target?.startsWith('/dev/vfio/'));
  if (fds.length === 0) throw new TcelabError("adopt the inner QEMU's VFIO fds", `pid ${lab.process.pid} holds no /dev/vfio fd`);
  await worker.adoptFds(
    lab.process.pid,
    fds.map((e) => Number(e.name)),
  );
  return fds.map((e) => e.target!);
}
