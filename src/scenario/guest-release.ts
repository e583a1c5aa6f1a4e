import type { ScenarioContext } from './scenario.js';
import type { Sample } from '../probes/sampler.js';
import { awaitRelease, type ReleaseVerdict } from '../probes/release.js';
import { atRestAfterRcuBarriers, NEVER } from './guest-pins.js';

/** A fresh guest sample taken after now: the baseline for the next step. */
export async function guestSampleNow(ctx: ScenarioContext): Promise<Sample> {
  // An event wait (the next sample, every 200 ms): the ceiling only bounds an agent that stopped answering.
  const s = await ctx.sampler.waitFor('guest', () => true, { after: ctx.sampler.now(), timeoutMs: 30_000 });
  if (!s) {
    const ended = ctx.sampler.endedBecause('guest');
    throw new Error(ended ? `no guest sample: the guest's sampling ended (${ended})` : 'no guest sample within 30 s (sampler running)');
  }
  return s;
}

/** Waits for the guest's pinned pages to return to `baseline` after `event`; records the verdict. */
export async function awaitGuestRelease(
  ctx: ScenarioContext,
  baseline: Sample,
  event: string,
  eventT: number,
  timeoutMs: number,
  /**
   * true: the event is over (the ioctl returned, the process was reaped); a function: asked every 100 ms whether it is
   * over yet. Once it is, RCU barriers may end the wait (guest-pins.ts).
   */
  settle: boolean | (() => Promise<boolean>) = false,
): Promise<ReleaseVerdict> {
  // An event that is not over by the ceiling never ends the wait early: the ceiling decides.
  const deadline = Date.now() + timeoutMs;
  const over = async (): Promise<boolean> => {
    if (typeof settle !== 'function') return true;
    while (!(await settle())) {
      if (Date.now() > deadline) return false;
      await new Promise((r) => setTimeout(r, 100));
    }
    return true;
  };
  const atRest = settle ? over().then((yes) => (yes ? atRestAfterRcuBarriers(ctx.agent) : NEVER)) : undefined;
  const v = await awaitRelease(
    ctx.sampler,
    'guest',
    'pinnedPages',
    baseline,
    { name: event, t: eventT },
    timeoutMs,
    0,
    'both',
    () => 0,
    undefined,
    atRest,
  );
  ctx.releases.push(v);
  return v;
}

/**
 * Whether a guest process can no longer close anything: gone, a zombie (its files were closed before it became one),
 * or stopped (it holds what it holds until it is continued).
 */
export function processSettled(ctx: ScenarioContext, pid: number): () => Promise<boolean> {
  return async () => {
    const stat = await ctx.agent.readFile(`/proc/${pid}/stat`).then(
      (r) => r.content,
      () => undefined,
    );
    // "pid (comm) S …": the state follows the last ')' (comm may hold anything).
    const state = stat?.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return stat === undefined || ['Z', 'X', 'x', 'T', 't'].includes(state ?? '');
  };
}
