import type { Lab } from '../../lab/lab.js';
import { LAB_MARKER_ENV, type ProcessScanner, describeProcessMemory, hostPageKb } from '../../probes/host-attribution.js';
import type { PinCounters } from '../../probes/proc.js';
import { awaitRelease, type ReleaseVerdict, releasedNothing } from '../../probes/release.js';
import type { PinnedPageSampler, Sample } from '../../probes/sampler.js';
import type { Progress } from '../../util/progress.js';
import { BASELINE_WAIT_MS, type HostBaseline } from './host-baseline.js';
import { bothHeldStill, HOLD_STILL_MS, rawSlack, spreadOf } from './hold-still.js';
import type { CheckRecorder } from '../checks.js';
import { describeHolders } from '../guest-balance.js';
import type { GuestHost } from './guest-host.js';

export interface HostReleaseJudging {
  sampler: PinnedPageSampler;
  scanner: ProcessScanner;
  /** The host sample taken before QEMU existed. */
  baseline: Sample;
  /** How far an attributed counter's baseline could be off (host-baseline.ts): the lowest reading was taken. */
  baselineSpread: HostBaseline['spread'];
  /** The neighbours' VmPin one by one at the baseline (pid → kB). */
  baselineNeighbourPins: Record<number, number>;
  checks: CheckRecorder;
  lab: Lab;
  /**
   * The lab's host where it is a guest that runs nothing but this lab (kvm-lab-host): its system-wide counters are
   * judged as they are, and what outlives QEMU is asked of its agent.
   */
  guestHost?: GuestHost;
  /** How long counters may take to return to baseline after QEMU exits. */
  timeoutMs: number;
  mlockedToleranceKb: number;
  progress: Progress;
}

/**
 * After QEMU is gone, the host's pinned pages and Mlocked must return to the
 * baseline taken before launch; while it ran, the host must have accounted
 * what the profile implies (locked guest RAM, or VFIO-pinned guest RAM).
 */
export async function judgeHostRelease(judging: HostReleaseJudging): Promise<ReleaseVerdict[]> {
  const { sampler, scanner, baseline, baselineSpread, baselineNeighbourPins, checks, lab, timeoutMs, mlockedToleranceKb, progress } =
    judging;
  const releases: ReleaseVerdict[] = [];
  const exit = await lab.process.exited;
  const exitT = exit.at - sampler.t0;
  const ramKb = lab.profile.qemu.memoryMiB * 1024;
  const running = sampler.of('host').filter((s) => s.pid === lab.process.pid);
  const locked = lockedMemoryJudgement(lab, baseline);
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
    const ramPages = ramKb / 4;
    const unattributed = (c: Sample['counters']) => c.unattributedPinnedPages ?? c.pinnedPages;
    const peakPinned = Math.max(0, ...running.map((s) => unattributed(s.counters))) - unattributed(baseline.counters);
    checks.atLeast(
      'host: FOLL_PIN pages while running ≈ guest RAM (VFIO pre-registration)',
      peakPinned,
      Math.floor(ramPages * 0.9),
      'pages',
    );
  }
  const judged: Judgement[] = judging.guestHost
    ? dedicatedHostJudgements(mlockedToleranceKb)
    : [
        {
          counter: 'unattributedPinnedPages',
          raw: 'pinnedPages',
          neighbours: 'neighbourPinnedKb',
          own: 'VmPin',
          label: 'pinned pages (FOLL_PIN)',
          how: "system-wide less the neighbours' own VmPin",
          unit: 'pages',
          tolerance: 0,
          // A neighbour's VmPin and the FOLL_PIN pages behind it differ by a few pages (io_uring's own pins: seen 18
          // pages while neighbours pinned 120 MiB): 1 % of the neighbours' change is allowed, as for Mlocked.
          churn: (c) => Math.abs((c.neighbourPinnedKb ?? 0) - (baseline.counters.neighbourPinnedKb ?? 0)) / 100 / hostPageKb(),
          churnNote: " + 1 % of the neighbours' change",
          uncertainty: (v) => coalescedPinsUncertainty(v, baselineNeighbourPins, scanner.scan().neighbourPins),
        },
        { ...locked, tolerance: mlockedToleranceKb },
      ];
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
  if (judging.guestHost) {
    await judgeGuestHostLeftovers(judging.guestHost, lab, checks);
    return releases;
  }
  // Whatever the lab started must be gone with QEMU: a helper that lives on keeps its locked and pinned memory.
  const leftovers = scanner.scan().lab.filter((p) => p.pid !== lab.process.pid);
  checks.record(
    'host: no process of the lab outlives QEMU',
    leftovers.length === 0,
    'none',
    leftovers.length ? leftovers.map(describeProcessMemory).join('; ') : 'none',
    leftovers.length ? `processes carrying ${lab.name}'s marker (${LAB_MARKER_ENV}) are still alive after QEMU exited` : undefined,
  );
  return releases;
}

/** A host that runs nothing but the lab (a guest: kvm-lab-host): the system-wide counters are the lab's part. */
function dedicatedHostJudgements(mlockedToleranceKb: number): Judgement[] {
  const how = 'system-wide, on a lab host that runs nothing but this lab';
  return [
    {
      counter: 'pinnedPages',
      raw: 'pinnedPages',
      own: 'VmPin',
      label: 'pinned pages (FOLL_PIN)',
      how,
      unit: 'pages',
      tolerance: 0,
      churn: () => 0,
    },
    {
      counter: 'mlockedKb',
      raw: 'mlockedKb',
      own: 'locked memory',
      label: 'Mlocked',
      how,
      unit: 'kB',
      tolerance: mlockedToleranceKb,
      churn: () => 0,
    },
  ];
}

/**
 * On a lab host that is a guest, whatever outlives QEMU and still holds a VFIO fd or locked memory is the lab's: the
 * host guest runs nothing else that would (its agent holds none).
 */
async function judgeGuestHostLeftovers(guestHost: GuestHost, lab: Lab, checks: CheckRecorder): Promise<void> {
  const holders = await guestHost.agent.pinHolders().then(
    (all) => all.filter((h) => h.pid !== lab.process.pid),
    (err: Error) => err,
  );
  if (holders instanceof Error) {
    checks.record('host: no process of the lab outlives QEMU', false, 'none', `the lab host's agent did not answer: ${holders.message}`);
    return;
  }
  checks.record(
    'host: no process of the lab outlives QEMU',
    holders.length === 0,
    'none',
    holders.length ? describeHolders(holders) : 'none',
    holders.length ? 'processes of the lab host still hold a VFIO fd or locked memory after QEMU exited' : undefined,
  );
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

/** One counter the host must give back after QEMU exits, and how the lab's part of it is told apart. */
export interface Judgement {
  counter: keyof PinCounters;
  raw: keyof PinCounters & ('pinnedPages' | 'mlockedKb');
  /** The neighbours' part of the raw counter, when the lab's part is the raw counter less it. */
  neighbours?: 'neighbourPinnedKb' | 'neighbourLockedKb';
  own: string;
  label: string;
  /** How the lab's part is measured, for the check's detail. */
  how: string;
  unit: string;
  tolerance: number;
  /** More room a sample earns for the neighbours' churn it had to subtract. */
  churn: (c: PinCounters) => number;
  churnNote?: string;
  /** Why a counter found above its baseline (with the neighbours holding still) is still not the lab's for sure. */
  uncertainty?: (v: ReleaseVerdict) => string | undefined;
}

/**
 * A neighbour's VmPin is not its FOLL_PIN pins: io_uring pins a buffer backed by huge folios once per folio (it
 * coalesces them) while VmPin counts every page (measured: 8 MiB of VmPin on transparent huge pages, 4 pins). Such
 * a neighbour in the baseline that leaves during the run raises the lab's part by what its VmPin overstated (seen
 * in the suite: 2030 pages). Above the baseline by no more than the VmPin the baseline's neighbours have given up
 * since: not judged, with why; above by more (or no such neighbour): the lab's for sure.
 */
function coalescedPinsUncertainty(v: ReleaseVerdict, atBaseline: Record<number, number>, now: Record<number, number>): string | undefined {
  let leftKb = 0;
  for (const [pid, kb] of Object.entries(atBaseline)) leftKb += Math.max(0, kb - (now[Number(pid)] ?? 0));
  const left = Math.round(leftKb / hostPageKb());
  const above = v.final - v.baseline;
  if (above > left) return undefined;
  return (
    `not judged: ${above} pages above the baseline, no more than the VmPin that neighbours of the baseline have given ` +
    `up since (${left} pages): io_uring counts the pins of a buffer backed by huge folios once per folio where VmPin ` +
    "counts every page, so such a neighbour's VmPin overstates its pins and its leaving raises the lab's part"
  );
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

/**
 * Mlocked, the lab's part: its own memory cgroup's unevictable memory where it has one (nobody else's pages are
 * charged there: lab-cgroup.ts); else the system-wide counter less what the neighbours lock (host-attribution.ts).
 */
function lockedMemoryJudgement(lab: Lab, baseline: Sample): Omit<Judgement, 'tolerance'> {
  const base = { raw: 'mlockedKb', own: 'locked memory', label: 'Mlocked', unit: 'kB' } as const;
  if (lab.cgroup) return { ...base, counter: 'labLockedKb', how: "unevictable memory of the lab's own memory cgroup", churn: () => 0 };
  return {
    ...base,
    counter: 'unattributedMlockedKb',
    neighbours: 'neighbourLockedKb',
    how: "system-wide less the neighbours' own locked memory",
    // Attributing a neighbour's Mlocked share from its mappings is good to a fraction of a percent (seen: 4.5 MB
    // of a 2.26 GB mem-lock QEMU that left during a run): 1 % of the neighbours' change is allowed on top.
    churn: (c) => Math.abs((c.neighbourLockedKb ?? 0) - (baseline.counters.neighbourLockedKb ?? 0)) / 100,
    churnNote: " + 1 % of the neighbours' change",
  };
}
