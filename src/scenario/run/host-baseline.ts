import type { PinCounters } from '../../probes/proc.js';
import type { PinnedPageSampler, Sample } from '../../probes/sampler.js';
import { bothHeldStill, HOLD_STILL_MS, spreadOf } from './hold-still.js';

/** The lab's part of a system-wide counter: the counter less what the neighbours account themselves. */
interface AttributedCounter {
  counter: 'unattributedMlockedKb' | 'unattributedPinnedPages';
  raw: 'mlockedKb' | 'pinnedPages';
  neighbours: 'neighbourLockedKb' | 'neighbourPinnedKb';
}

const ATTRIBUTED: AttributedCounter[] = [
  { counter: 'unattributedMlockedKb', raw: 'mlockedKb', neighbours: 'neighbourLockedKb' },
  { counter: 'unattributedPinnedPages', raw: 'pinnedPages', neighbours: 'neighbourPinnedKb' },
];

/** How long the baseline waits for both parts to hold still before it takes the lowest reading and says how uncertain it is. */
export const BASELINE_WAIT_MS = 5000;

/** The host baseline, and how far each attributed counter's baseline could be off (0: read while all held still). */
export interface HostBaseline {
  sample: Sample;
  /** Per attributed counter: max − min of the lab's part over the wait, when no window held still; else 0. */
  spread: Partial<Record<keyof PinCounters, number>>;
}

const heldStill = (window: Sample[], c: AttributedCounter) =>
  bothHeldStill(
    window.map((s) => s.counters),
    c.raw,
    c.neighbours,
  );

/** The samples of the last HOLD_STILL_MS before `end` (inclusive), if they span it. */
function windowEndingAt(samples: Sample[], end: number): Sample[] | undefined {
  const w = samples.slice(0, end + 1).filter((s) => s.t >= samples[end]!.t - HOLD_STILL_MS);
  return w.length >= 2 && samples[end]!.t - w[0]!.t >= HOLD_STILL_MS * 0.9 ? w : undefined;
}

/**
 * The host baseline, read where the lab's part of each counter can be told: the system-wide counter and the
 * neighbours' accounting both hold still (1 MiB) for 500 ms. The scan of the neighbours lags the 20 Hz system-wide
 * counters by up to 250 ms, so while a neighbour locks or pins, the lab's part (nothing yet: QEMU does not exist)
 * reads high, and while one exits, low. A baseline read high hides a leak as large (seen: a mem-lock=on lab starting
 * beside the run raised it by 58 MiB and hid a seeded 64 MiB leak), one read low fails a run that left nothing.
 * None such within 5 s: per counter, the reading of the last window that held still, else the lowest of the wait (a
 * leak cannot hide under it) with the spread of the wait, so a verdict above it by no more than that says "not
 * judged" instead of failing (host-release.ts).
 */
export async function readHostBaseline(
  sampler: PinnedPageSampler,
  first: Sample,
  opts: { mlockedByCgroup: boolean },
): Promise<HostBaseline> {
  // Mlocked judged on the lab's own cgroup (the usual case as root) does not wait: it still gets its reading below.
  const awaited = ATTRIBUTED.filter((c) => !(opts.mlockedByCgroup && c.counter === 'unattributedMlockedKb'));
  const deadline = first.t + BASELINE_WAIT_MS;
  for (;;) {
    await new Promise((r) => setTimeout(r, 100));
    const samples = sampler.of('host').filter((s) => s.t >= first.t);
    const window = windowEndingAt(samples, samples.length - 1);
    if ((window && awaited.every((c) => heldStill(window, c))) || sampler.now() >= deadline) return baselineFromSamples(samples);
  }
}

/** Each counter on its own: the reading of the last window in which it held still, else the lowest, with the spread. */
export function baselineFromSamples(samples: Sample[]): HostBaseline {
  const last = samples.at(-1)!;
  const counters = { ...last.counters };
  const spread: HostBaseline['spread'] = {};
  for (const c of ATTRIBUTED) {
    if (last.counters[c.counter] === undefined) continue;
    let still: Sample | undefined;
    for (let end = samples.length - 1; end >= 0 && !still; end--) {
      const w = windowEndingAt(samples, end);
      if (w && heldStill(w, c)) still = samples[end];
    }
    if (still) counters[c.counter] = still.counters[c.counter];
    else {
      const parts = samples.map((s) => s.counters[c.counter] ?? 0);
      counters[c.counter] = Math.min(...parts);
      spread[c.counter] = spreadOf(parts);
    }
  }
  return { sample: { ...last, counters }, spread };
}
