import type { Lab } from '../../lab/lab.js';
import type { PinCounters } from '../../probes/proc.js';
import { awaitRelease, type ReleaseVerdict, releasedNothing } from '../../probes/release.js';
import type { PinnedPageSampler, Sample } from '../../probes/sampler.js';
import type { Progress } from '../../util/progress.js';
import type { CheckRecorder } from '../checks.js';
import { BASELINE_WAIT_MS, type HostBaseline } from './host-baseline.js';
import { bothHeldStill, HOLD_STILL_MS, rawSlack, spreadOf } from './hold-still.js';
import type { LabHost } from './lab-host.js';
import type { Judgement } from './release-judgements.js';

export interface HostReleaseJudging {
  sampler: PinnedPageSampler;
  /** The host sample taken before QEMU existed. */
  baseline: Sample;
  /** How far an attributed counter's baseline could be off (host-baseline.ts): the lowest reading was taken. */
  baselineSpread: HostBaseline['spread'];
  /** The neighbours' VmPin one by one at the baseline (pid → kB). */
  baselineNeighbourPins: Record<number, number>;
  checks: CheckRecorder;
  lab: Lab;
  /** The machine that ran QEMU: it tells the lab's part of each counter and what of the lab outlived QEMU. */
  labHost: LabHost;
  /** How long counters may take to return to baseline after QEMU exits. */
  timeoutMs: number;
  mlockedToleranceKb: number;
  progress: Progress;
  /**
   * A seeded fault: the FOLL_PIN expectation counts this page size (KiB) instead of the pinning kernel's (kvm-tce-path's
   * `assume-4k-host-pages`, run on a 64 KiB-page lab host, must fail that check).
   */
  assumedPageKb?: number;
}

/**
 * After QEMU is gone, the host's pinned pages and Mlocked must return to the
 * baseline taken before launch; while it ran, the host must have accounted
 * what the profile implies (locked guest RAM, or VFIO-pinned guest RAM).
 */
export async function judgeHostRelease(judging: HostReleaseJudging): Promise<ReleaseVerdict[]> {
  const { sampler, labHost, baseline, baselineSpread, baselineNeighbourPins, checks, lab, timeoutMs, mlockedToleranceKb, progress } =
    judging;
  const releases: ReleaseVerdict[] = [];
  const exit = await lab.process.exited;
  const exitT = exit.at - sampler.t0;
  const ramKb = lab.profile.qemu.memoryMiB * 1024;
  const running = sampler.of('host').filter((s) => s.pid === lab.process.pid);
  const { pinned, locked } = labHost.judgements(lab, baseline, baselineNeighbourPins, mlockedToleranceKb);
  if (lab.profile.qemu.memLock) {
    const peakLck = Math.max(0, ...running.map((s) => s.counters.vmLckKb ?? 0));
    checks.atLeast(
      'host: QEMU VmLck while running covers guest RAM (mem-lock=on)',
      peakLck,
      ramKb,
      `kB, guest RAM ${lab.profile.qemu.memoryMiB} MiB`,
    );
    const peakMlocked = Math.max(0, ...running.map((s) => s.counters[locked.counter] ?? 0)) - (baseline.counters[locked.counter] ?? 0);
    checks.atLeast('host: Mlocked grew by at least guest RAM while running', peakMlocked, ramKb, `kB (${locked.how})`);
  }
  if (lab.profile.devices.some((d) => d.driver === 'vfio-pci')) {
    // FOLL_PIN counts the pinning kernel's base pages: 4 KiB or 64 KiB, whichever kernel the lab host runs.
    const pageKb = judging.assumedPageKb ?? (await labHost.pageKb());
    const ramPages = ramKb / pageKb;
    const peakPinned = Math.max(0, ...running.map((s) => s.counters[pinned.counter] ?? 0)) - (baseline.counters[pinned.counter] ?? 0);
    checks.atLeast(
      'host: FOLL_PIN pages while running ≈ guest RAM (VFIO pre-registration)',
      peakPinned,
      Math.floor(ramPages * 0.9),
      `pages of ${pageKb} KiB`,
    );
  }
  const judged = [pinned, locked];
  const signed = (n: number) => `${n >= 0 ? '+' : ''}${n}`;
  for (const j of judged) {
    const v = await progress.step(`wait for host ${j.label} to return to baseline`, async (update) => {
      const timer = setInterval(() => {
        const last = sampler.of('host').at(-1)?.counters[j.counter] ?? 0;
        update(`${last} now, baseline ${baseline.counters[j.counter] ?? 0}`, (sampler.now() - exitT) / timeoutMs);
      }, 200);
      try {
        // Only the lab's own leftovers fail it: a neighbour's release (an exited process's pins put late) ends below the baseline.
        return await awaitRelease(
          sampler,
          'host',
          j.counter,
          baseline,
          { name: 'QEMU exit', t: exitT },
          timeoutMs,
          j.tolerance,
          'not-above',
          j.churn,
          j.neighbours === undefined
            ? undefined
            : // Back for 500 ms while the neighbours release nothing of this counter (within 1 MiB): a neighbour
              // that is exiting leaves the system-wide counter before the scan, which makes the lab's part look
              // smaller (a false pass); one that is growing can only make it look larger, and may go on for longer
              // than the wait (seen: a neighbouring mem-lock=on lab booting for 10 s failed a run that was back).
              {
                ms: 500,
                // The system-wide counter too: the scan of the neighbours is taken at most every 250 ms and can
                // miss a neighbour that locks and unlocks faster (seen: a 300 ms cycle read as always locked).
                steady: (w) =>
                  releasedNothing(w.map((c) => c[j.neighbours!] ?? 0)) &&
                  releasedNothing(
                    w.map((c) => c[j.raw]),
                    rawSlack(j.raw),
                  ),
              },
          // QEMU has exited (awaited above): a lab host that can tell its counters are at rest ends the wait then.
          labHost.atRest?.(),
        );
      } finally {
        clearInterval(timer);
      }
    });
    // Not back while the neighbours moved: what the lab left and what a neighbour was doing cannot be told apart,
    // so it is judged again once they hold still (seen: the suite's labs coming and going for the whole wait).
    const still = !v.returned && j.neighbours !== undefined ? await judgeWhenNeighboursHoldStill(sampler, j, v, progress) : undefined;
    if (still && 'final' in still) Object.assign(v, { returned: still.back, final: still.final });
    releases.push(v);
    const name = `host: ${j.label} back to baseline after QEMU exit`;
    const notJudged =
      still && 'why' in still
        ? still.why
        : !v.returned
          ? (baselineUncertainty(v, j, baselineSpread[j.counter]) ?? (still ? j.uncertainty?.(v) : undefined))
          : undefined;
    if (notJudged) {
      v.notJudged = notJudged;
      checks.notApplicable(name, notJudged);
      continue;
    }
    const last = sampler.of('host').at(-1)?.counters;
    const context =
      j.neighbours === undefined
        ? j.how
        : `${j.how}: system-wide ${signed((last?.[j.raw] ?? 0) - baseline.counters[j.raw])} ${j.unit}, ` +
          `the neighbours' own ${j.own} ${signed((last?.[j.neighbours] ?? 0) - (baseline.counters[j.neighbours] ?? 0))} kB`;
    const when = still
      ? `not back within ${timeoutMs} ms while the neighbours moved; ${v.returned ? 'back' : 'still above'} once they held still for ${HOLD_STILL_MS} ms`
      : v.returned
        ? `release latency ${v.latencyMs} ms from process exit`
        : `not back within ${timeoutMs} ms`;
    checks.record(
      name,
      v.returned,
      `≤ ${v.baseline}${j.tolerance ? ` + ${j.tolerance}` : ''}${j.churnNote ?? ''}`,
      v.final,
      `${when}, peak ${v.peak}; ${context}`,
    );
  }
  const left = await labHost.leftovers(lab);
  const name = 'host: no process of the lab outlives QEMU';
  if ('unknown' in left) checks.record(name, false, 'none', left.unknown);
  else checks.record(name, left.count === 0, 'none', left.count ? left.described : 'none', left.count ? left.why : undefined);
  return releases;
}

/** How long after the release wait a verdict on the neighbours' accounting waits for them to hold still. */
const HOLD_STILL_WAIT_MS = 5000;

/**
 * The lab's part of a counter judged in the first window of HOLD_STILL_MS in which the neighbours' part and the
 * system-wide counter move by at most 1 MiB either way (then the difference is exact to the churn allowance); none within
 * HOLD_STILL_WAIT_MS: not judged, with why. A fail stays a fail only when the neighbours held still while it was read.
 */
async function judgeWhenNeighboursHoldStill(
  sampler: PinnedPageSampler,
  j: Judgement,
  v: ReleaseVerdict,
  progress: Progress,
): Promise<{ back: boolean; final: number } | { why: string }> {
  const neighbours = j.neighbours!;
  const tolerance = (c: PinCounters) => j.tolerance + j.churn(c);
  const start = sampler.now();
  let moved = 0;
  let movedAll = 0;
  return progress.step(`host ${j.label} not back while the neighbours moved: waiting for them to hold still`, async () => {
    while (sampler.now() - start < HOLD_STILL_WAIT_MS) {
      await new Promise((r) => setTimeout(r, 100));
      const now = sampler.now();
      if (now - start < HOLD_STILL_MS) continue;
      const window = sampler
        .of('host')
        .filter((s) => s.t >= now - HOLD_STILL_MS)
        .map((s) => s.counters);
      const theirs = spreadOf(window.map((c) => c[neighbours] ?? 0));
      const all = spreadOf(window.map((c) => c[j.raw]));
      moved = Math.max(moved, theirs);
      movedAll = Math.max(movedAll, all);
      if (window.length >= 2 && bothHeldStill(window, j.raw, neighbours)) {
        const back = window.every((c) => (c[j.counter] ?? 0) - v.baseline <= tolerance(c));
        return { back, final: window.at(-1)![j.counter] ?? v.final };
      }
    }
    return {
      why:
        `not judged: not back within ${v.timeoutMs} ms (final ${v.final}, baseline ${v.baseline} ${j.unit}) while the ` +
        `neighbours' own ${j.own} kept moving (by up to ${moved} kB, the system-wide counter by up to ${movedAll} ${j.unit}, ` +
        `in every ${HOLD_STILL_MS} ms of the ${HOLD_STILL_WAIT_MS} ms after): the lab's part of the system-wide counter ` +
        'cannot be told from theirs; a lab with its own memory cgroup ' +
        '(run as root on cgroup v1, or a delegated v2 cgroup) judges Mlocked exactly',
    };
  });
}

/**
 * A baseline that could not be read while the neighbours held still is the lowest reading of its wait, `spread`
 * below the highest (host-baseline.ts): a counter above it by no more than that may be the lab's or the skew of the
 * neighbours' scan at the baseline — not judged, with why; above by more, it is above every reading: the lab's.
 */
export function baselineUncertainty(v: ReleaseVerdict, j: Judgement, spread: number | undefined): string | undefined {
  if (!spread || v.final - v.baseline > spread + j.tolerance) return undefined;
  return (
    `not judged: ${v.final - v.baseline} ${j.unit} above the baseline, which could not be read while the neighbours ` +
    `held still: the lab's part (nothing yet) spread over ${spread} ${j.unit} in the ${BASELINE_WAIT_MS / 1000} s before QEMU ` +
    'started, the lowest reading was taken, and what the lab left cannot be told from that skew'
  );
}
