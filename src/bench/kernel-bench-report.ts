import type { ColdBuild } from '../kbuild/build-record.js';
import { fmt, median } from './stats.js';
import type { TimedStep } from './timed-progress.js';

/**
 * How the kernel-build section of the bench says what it measured: the phases of a build named from the library's
 * own step labels, durations, samples with their median, and each figure against its target.
 */

/** The phase a library step is, by its label (image-builder.ts, lab-kernel.ts); a label not listed stays as it is. */
const PHASES: Array<[RegExp, string]> = [
  [/^configure /, 'configure (allnoconfig + the lab fragment)'],
  [/^build .*\(make /, 'make vmlinux modules'],
  [/^install the modules of /, 'make modules_install'],
  [/^verify cached packages/, 'verify the cached packages'],
  [/^unpack packages/, 'unpack the userland packages'],
  [/^stage the kernel/, 'stage the kernel (vmlinux, modules)'],
  [/^the guest agent /, 'the guest agent (cross-compiled, or kept from an earlier build)'],
  [/^assemble initramfs/, 'assemble the initramfs'],
];

export const phaseOf = (label: string): string => PHASES.find(([re]) => re.test(label))?.[1] ?? label;

export interface PhaseRow {
  phase: string;
  ms: number;
}

/**
 * The phases of one operation that took `totalMs`: its steps by name (steps of the same phase added up), then what
 * no step covered (hashing the inputs, gzip, writing the image) as one row.
 */
export function phaseRows(steps: TimedStep[], totalMs: number, rest: string): PhaseRow[] {
  const rows: PhaseRow[] = [];
  for (const s of steps) {
    const phase = phaseOf(s.label);
    const row = rows.find((r) => r.phase === phase);
    if (row) row.ms += s.ms;
    else rows.push({ phase, ms: s.ms });
  }
  const covered = rows.reduce((sum, r) => sum + r.ms, 0);
  rows.push({ phase: rest, ms: Math.max(0, totalMs - covered) });
  return rows;
}

/** Rows of phases as lines: the phase, its seconds right-aligned. */
export function phaseLines(rows: PhaseRow[], width = 52): string[] {
  return rows.map((r) => `  ${r.phase.padEnd(width)} ${fmt(r.ms / 1000, 1).padStart(6)} s`);
}

/** "(target ≤ 30 s: met)": a figure against its bound. */
export function against(value: number, bound: number, unit = ''): string {
  return `(target ≤ ${bound}${unit}: ${value <= bound ? 'met' : 'missed'})`;
}

/** Seconds below a minute ("22.2 s"), minutes and seconds above ("18 min 09 s"). */
export function duration(ms: number): string {
  if (ms < 60_000) return `${fmt(ms / 1000, 1)} s`;
  const s = Math.round(ms / 1000);
  return `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, '0')} s`;
}

/** Samples in seconds with their median first: "median 2.47 s  [2.51, 2.47, 2.40]". */
export function samples(ms: number[]): string {
  return `median ${fmt(median(ms) / 1000)} s  [${ms.map((x) => fmt(x / 1000)).join(', ')}]`;
}

/** One recorded cold build: how long, how many objects, how (ccache empty or not, -jN), when, of what. */
export function coldBuildLine(b: { out: string; describe?: string; release?: string; cold: ColdBuild }): string {
  const how = b.cold.emptyCcache ? 'empty ccache' : 'ccache not empty (hits: not a cold compile)';
  return (
    `${duration(b.cold.ms)}, ${b.cold.objects} objects, -j${b.cold.jobs}, ${how}, ${b.cold.at.slice(0, 16).replace('T', ' ')} UTC: ` +
    `${b.describe ?? '?'}${b.release ? ` (${b.release})` : ''} in ${b.out}`
  );
}
