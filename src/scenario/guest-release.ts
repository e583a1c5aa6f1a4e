import type { ScenarioContext } from './scenario.js';
import type { Sample } from '../probes/sampler.js';
import { awaitRelease, type ReleaseVerdict } from '../probes/release.js';

/** A fresh guest sample taken after now: the baseline for the next step. */
export async function guestSampleNow(ctx: ScenarioContext): Promise<Sample> {
  // An event wait (the next sample, every 200 ms): the ceiling only bounds an agent that stopped answering.
  const s = await ctx.sampler.waitFor('guest', () => true, { after: ctx.sampler.now(), timeoutMs: 30_000 });
  if (!s) throw new Error(`no guest sample within 30 s (${ctx.sampler.endedBecause('guest') ?? 'sampler running'})`);
  return s;
}

/** Waits for the guest's pinned pages to return to `baseline` after `event`; records the verdict. */
export async function awaitGuestRelease(
  ctx: ScenarioContext,
  baseline: Sample,
  event: string,
  eventT: number,
  timeoutMs: number,
): Promise<ReleaseVerdict> {
  const v = await awaitRelease(ctx.sampler, 'guest', 'pinnedPages', baseline, { name: event, t: eventT }, timeoutMs);
  ctx.releases.push(v);
  return v;
}
