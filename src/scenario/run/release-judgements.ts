import type { Lab } from '../../lab/lab.js';
import { hostPageKb, type ProcessScanner } from '../../probes/host-attribution.js';
import type { PinCounters } from '../../probes/proc.js';
import type { ReleaseVerdict } from '../../probes/release.js';
import type { Sample } from '../../probes/sampler.js';

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

/** The two counters a lab host must give back after QEMU exits: pinned pages and locked memory. */
export interface HostJudgements {
  pinned: Judgement;
  locked: Judgement;
}

/** A host that runs nothing but the lab (a guest: kvm-lab-host): the system-wide counters are the lab's part. */
export function dedicatedHostJudgements(mlockedToleranceKb: number): HostJudgements {
  const how = 'system-wide, on a lab host that runs nothing but this lab';
  return {
    pinned: {
      counter: 'pinnedPages',
      raw: 'pinnedPages',
      own: 'VmPin',
      label: 'pinned pages (FOLL_PIN)',
      how,
      unit: 'pages',
      tolerance: 0,
      churn: () => 0,
    },
    locked: {
      counter: 'mlockedKb',
      raw: 'mlockedKb',
      own: 'locked memory',
      label: 'Mlocked',
      how,
      unit: 'kB',
      tolerance: mlockedToleranceKb,
      churn: () => 0,
    },
  };
}

/**
 * A host that runs other things beside the lab (this machine, a real POWER lab host): the lab's part of each counter is
 * the system-wide counter less what its neighbours hold (host-attribution.ts), or its own cgroup's where it has one.
 */
export function attributedHostJudgements(
  lab: Lab,
  baseline: Sample,
  baselineNeighbourPins: Record<number, number>,
  scanner: ProcessScanner,
  mlockedToleranceKb: number,
): HostJudgements {
  return {
    pinned: {
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
    locked: { ...lockedMemoryJudgement(lab, baseline), tolerance: mlockedToleranceKb },
  };
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
