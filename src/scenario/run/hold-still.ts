import { hostPageKb } from '../../probes/host-attribution.js';
import type { PinCounters } from '../../probes/proc.js';

/**
 * How long the neighbours' part and the system-wide counter must hold still (within 1 MiB) for the lab's part to be
 * read from their difference: at the baseline (host-baseline.ts) and after QEMU exits (host-release.ts).
 */
export const HOLD_STILL_MS = 500;
export const STILL_KB = 1024;

export const spreadOf = (xs: number[]) => Math.max(...xs) - Math.min(...xs);

/** 1 MiB of a system-wide counter, in its unit. */
export const rawSlack = (raw: 'pinnedPages' | 'mlockedKb') => (raw === 'pinnedPages' ? STILL_KB / hostPageKb() : STILL_KB);

/** The system-wide counter and the neighbours' part of it both moved by at most 1 MiB over these readings. */
export function bothHeldStill(
  window: PinCounters[],
  raw: 'pinnedPages' | 'mlockedKb',
  neighbours: 'neighbourPinnedKb' | 'neighbourLockedKb',
): boolean {
  return spreadOf(window.map((c) => c[raw])) <= rawSlack(raw) && spreadOf(window.map((c) => c[neighbours] ?? 0)) <= STILL_KB;
}
