import { cleanupFloor, bootOnce, floorInitrd } from '../src/bench/boot-bench.js';
import { median } from '../src/bench/stats.js';
import { requireGuestImage } from '../src/image/image-builder.js';
import { loadProfile } from '../src/qemu/profile.js';
import { withStagedQemu } from '../src/qemu/stage-qemu.js';
import { silentProgress } from '../src/util/progress.js';

/**
 * This machine's floor, as the bench measures it (spawn → first line of a minimal /init: the same kernel, VOF and
 * machine as every lab, nothing of tcelab's), measured before any test file starts: the unit the suite's own time is
 * told in, so that a suite's time says the same on a machine twice as fast or half as fast. It is measured at the
 * suite's parallelism — as many boots at once as the suite runs files at once, the median of three rounds — because a
 * single boot keeps one core busy: on a machine whose CPU quota is one core it is as fast as on two, while the suite,
 * two files at once, takes twice as long.
 */
export async function measureFloorMs(parallel: number): Promise<number> {
  const profile = await withStagedQemu(await loadProfile('emulated'), silentProgress);
  const image = await requireGuestImage('base');
  const floor = await floorInitrd(image);
  try {
    const times: number[] = [];
    for (let round = 0; round < 3; round++)
      times.push(...(await Promise.all(Array.from({ length: parallel }, () => bootOnce(profile, image, { floor, snapshots: 'off' })))));
    return median(times);
  } finally {
    await cleanupFloor(floor);
  }
}

/** The suite's time in floors, and the target it has (docs/benchmark.md, "The suite's time"). */
export const SUITE_FLOORS_TARGET = 100;
export function suiteTimeLine(suiteMs: number, floorMs: number, parallel: number, files: number): string {
  const floors = suiteMs / floorMs;
  return (
    `suite: ${(suiteMs / 1000).toFixed(0)} s = ${floors.toFixed(0)} floors (this machine's floor ${(floorMs / 1000).toFixed(2)} s, ` +
    `${parallel} boots at once, the suite running ${files} files at once, measured at the start of this run; ` +
    `target ≤ ${SUITE_FLOORS_TARGET} floors: ${floors <= SUITE_FLOORS_TARGET ? 'met' : 'missed'})`
  );
}
