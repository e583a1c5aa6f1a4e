import { cleanupFloor, bootOnce, floorInitrd } from '../src/bench/boot-bench.js';
import { median } from '../src/bench/stats.js';
import { requireGuestImage } from '../src/image/image-builder.js';
import { loadProfile } from '../src/qemu/profile.js';
import { withStagedQemu } from '../src/qemu/stage-qemu.js';
import { silentProgress } from '../src/util/progress.js';

/**
 * This machine's floor, as the bench measures it (spawn → first line of a minimal /init: the same kernel, VOF and
 * machine as every lab, nothing of tcelab's), the median of three, measured before any test file starts: the unit the
 * suite's own time is told in, so that a suite's time says the same on a machine twice as fast or half as fast.
 */
export async function measureFloorMs(): Promise<number> {
  const profile = await withStagedQemu(await loadProfile('emulated'), silentProgress);
  const image = await requireGuestImage('base');
  const floor = await floorInitrd(image);
  try {
    const times: number[] = [];
    for (let i = 0; i < 3; i++) times.push(await bootOnce(profile, image, { floor, snapshots: 'off' }));
    return median(times);
  } finally {
    await cleanupFloor(floor);
  }
}

/** The suite's time in floors, and the target it has (docs/benchmark.md, "The suite's time"). */
export const SUITE_FLOORS_TARGET = 100;
export function suiteTimeLine(suiteMs: number, floorMs: number): string {
  const floors = suiteMs / floorMs;
  return (
    `suite: ${(suiteMs / 1000).toFixed(0)} s = ${floors.toFixed(0)} floors (this machine's floor ${(floorMs / 1000).toFixed(2)} s, ` +
    `measured at the start of this run; target ≤ ${SUITE_FLOORS_TARGET} floors: ${floors <= SUITE_FLOORS_TARGET ? 'met' : 'missed'})`
  );
}
