import { cleanupFloor, bootOnce, floorInitrd } from '../src/bench/boot-bench.js';
import { median } from '../src/bench/stats.js';
import { requireGuestImage } from '../src/image/image-builder.js';
import { loadProfile } from '../src/qemu/profile.js';
import { withStagedQemu } from '../src/qemu/stage-qemu.js';
import { silentProgress } from '../src/util/progress.js';

/**
 * This machine's floor, as the bench measures it (spawn → first line of a minimal /init: the same kernel, VOF and
 * machine as every lab, nothing of tcelab's): the unit the suite's own time is told in, so that a suite's time says
 * the same on a machine twice as fast or half as fast. It is measured at the suite's parallelism — as many boots at
 * once as the suite runs files at once, three rounds — because a single boot keeps one core busy: on a machine whose
 * CPU quota is one core it is as fast as on two, while the suite, two files at once, takes twice as long.
 * The suite measures it twice, before the first file and after the last, and takes the median of both: this kind of
 * machine drifts by up to half within a minute (2.9 s → 4.4 s, measured with nothing else running), so ten seconds at
 * one end of a six-minute run can land on either extreme, while the suite itself spans the drift.
 */
export async function measureFloorSamples(parallel: number): Promise<number[]> {
  const profile = await withStagedQemu(await loadProfile('emulated'), silentProgress);
  const image = await requireGuestImage('base');
  const floor = await floorInitrd(image);
  try {
    const times: number[] = [];
    for (let round = 0; round < 3; round++)
      times.push(...(await Promise.all(Array.from({ length: parallel }, () => bootOnce(profile, image, { floor, snapshots: 'off' })))));
    return times;
  } finally {
    await cleanupFloor(floor);
  }
}

/** The suite's time in floors, and the target it has (docs/benchmark.md, "The suite's time"). */
export const SUITE_FLOORS_TARGET = 100;
/**
 * The suite's time is its files' (first file's start to last file's end); the floor's own boots are timed apart
 * (`measuredMs`) and not counted, since measuring the ruler is not what the suite does (before 2026-12-07 the
 * boots before the first file were counted: about 3 floors more).
 */
export function suiteTimeLine(
  suiteMs: number,
  atStart: number[],
  atEnd: number[],
  parallel: number,
  files: number,
  measuredMs: { atStart: number; atEnd: number },
): string {
  const floorMs = median([...atStart, ...atEnd]);
  const floors = suiteMs / floorMs;
  const s = (ms: number) => (ms / 1000).toFixed(2);
  return (
    `suite: ${(suiteMs / 1000).toFixed(0)} s = ${floors.toFixed(0)} floors (this machine's floor ${s(floorMs)} s: ` +
    `the median of ${atStart.length} boots before the first file (median ${s(median(atStart))} s) and ${atEnd.length} after the last ` +
    `(${s(median(atEnd))} s), ${parallel} at once, the suite running ${files} files at once; measuring it took ` +
    `${(measuredMs.atStart / 1000).toFixed(0)} s before the first file and ${(measuredMs.atEnd / 1000).toFixed(0)} s after the last, ` +
    `not counted; target ≤ ${SUITE_FLOORS_TARGET} floors: ${floors <= SUITE_FLOORS_TARGET ? 'met' : 'missed'})`
  );
}
