import type { PinCounters } from './proc.js';
import type { PinnedPageSampler, Sample } from './sampler.js';

/** Whether one counter came back to its baseline after an event, and how long that took. */
export interface ReleaseVerdict {
  source: Sample['source'];
  counter: keyof PinCounters;
  baseline: number;
  /** Highest value seen between the baseline and the event. */
  peak: number;
  /** Value of the last sample taken. */
  final: number;
  returned: boolean;
  /** Distance from the baseline that still counts as back. */
  tolerance: number;
  /** 'not-above': anything at or below baseline + tolerance counts as back (a release by someone else is no leak). */
  direction: 'both' | 'not-above';
  /** From the event (process exit, fd close…) to the first sample back at baseline. */
  latencyMs?: number;
  event: string;
  timeoutMs: number;
  /** Not back, and known to stay so this long after the event (RCU barriers in the guest), before the ceiling. */
  atRestMs?: number;
  /** Why the counter could not be judged (its part of a shared counter could not be told apart): neither back nor not. */
  notJudged?: string;
}

/**
 * Waits (on the live sampler) until `counter` is back at the baseline sample's
 * value, at most timeoutMs after `eventT`. Detection is bounded by the
 * sampling interval: the latency is accurate to one interval.
 */
export async function awaitRelease(
  sampler: PinnedPageSampler,
  source: Sample['source'],
  counter: keyof PinCounters,
  baseline: Sample,
  event: { name: string; t: number },
  timeoutMs: number,
  tolerance = 0,
  direction: ReleaseVerdict['direction'] = 'both',
  /** More room a sample earns (e.g. for the neighbours' churn it had to subtract). */
  extraTolerance: (c: PinCounters) => number = () => 0,
  /**
   * Back only when it stays back: every sample of the next `ms` is back and `steady` holds for them. A counter
   * derived from two readings (a system-wide counter minus what a scan attributes to neighbours) can look back for
   * a moment while a neighbour is exiting (its memory leaves the counter before it leaves the scan).
   */
  confirm?: { ms: number; steady: (window: PinCounters[]) => boolean },
  /**
   * Resolves once the counter is known to be at rest (the guest's RCU barriers: scenario/guest-pins.ts): the wait then
   * ends at the next sample instead of at the ceiling, judged on that sample.
   */
  atRest?: Promise<unknown>,
): Promise<ReleaseVerdict> {
  const base = baseline.counters[counter] ?? 0;
  const isBack = (c: PinCounters) => {
    const v = c[counter] ?? 0;
    const tol = tolerance + extraTolerance(c);
    return direction === 'both' ? Math.abs(v - base) <= tol : v - base <= tol;
  };
  const deadline = event.t + timeoutMs;
  let after = event.t;
  let back: Sample | undefined;
  let rested: number | undefined;
  const until = atRest?.then(() => {
    rested = sampler.now();
  });
  for (;;) {
    const candidate = await sampler.waitFor(source, isBack, {
      after,
      timeoutMs: Math.max(0, deadline - sampler.now()),
      ...(until ? { until } : {}),
    });
    if (!candidate && rested !== undefined) {
      // At rest: the first sample taken after it says where the counter stays.
      const next = await sampler.waitFor(source, () => true, { after: rested, timeoutMs: 5000 });
      back = next && isBack(next.counters) ? next : undefined;
      break;
    }
    if (!candidate || !confirm) {
      back = candidate;
      break;
    }
    await new Promise((r) => setTimeout(r, confirm.ms));
    const window = sampler.of(source).filter((s) => s.t >= candidate.t && s.t <= candidate.t + confirm.ms);
    if (window.length >= 2 && window.every((s) => isBack(s.counters)) && confirm.steady(window.map((s) => s.counters))) {
      back = candidate;
      break;
    }
    after = candidate.t + 1;
    if (sampler.now() >= deadline) break;
  }
  const seen = sampler.of(source).filter((s) => s.t >= baseline.t);
  const values = seen.map((s) => s.counters[counter] ?? 0);
  return {
    source,
    counter,
    baseline: base,
    peak: Math.max(base, ...values),
    final: values.at(-1) ?? base,
    returned: back !== undefined,
    tolerance,
    direction,
    latencyMs: back ? back.t - event.t : undefined,
    event: event.name,
    timeoutMs,
    ...(rested !== undefined && !back ? { atRestMs: rested - event.t } : {}),
  };
}

/**
 * Whether nobody released more than `slackKb` of what these successive readings count: no reading lies that far
 * below the highest one before it (growth is not a release).
 */
export function releasedNothing(readings: number[], slackKb = 1024): boolean {
  let peak = Number.NEGATIVE_INFINITY;
  for (const x of readings) {
    peak = Math.max(peak, x);
    if (peak - x > slackKb) return false;
  }
  return true;
}
