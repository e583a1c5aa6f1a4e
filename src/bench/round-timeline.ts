import { fmt } from './stats.js';

/** A step of a run's `timings` that belongs to a round ("round 2: guest drmgr -c phb -r"). */
const ROUND_STEP = /^round (\d+): (.+)$/;

/**
 * A scenario's rounds as a table (ddw-hotplug's plug, bind, window, unplug, round after round): a row per phase in the
 * order the run first took it, a column per round, the round's sum, and which phase takes the largest share of a
 * round — what dominates, said with its numbers. Steps outside a round are left out; no rounds, no table.
 */
export function roundTimeline(timings: ReadonlyArray<{ step: string; ms: number }>): string[] {
  const phases: string[] = [];
  const byRound = new Map<number, Map<string, number>>();
  for (const { step, ms } of timings) {
    const m = step.match(ROUND_STEP);
    if (!m) continue;
    const round = Number(m[1]);
    const phase = m[2];
    if (!phases.includes(phase)) phases.push(phase);
    const row = byRound.get(round) ?? new Map<string, number>();
    row.set(phase, (row.get(phase) ?? 0) + ms);
    byRound.set(round, row);
  }
  if (byRound.size === 0) return [];
  const rounds = [...byRound.keys()].sort((a, b) => a - b);
  const width = Math.max(...phases.map((p) => p.length), 'round (sum of its phases)'.length);
  const cell = (ms: number | undefined) => (ms === undefined ? '—' : `${fmt(ms / 1000, 2)} s`).padStart(10);
  const totals = rounds.map((r) => [...byRound.get(r)!.values()].reduce((a, b) => a + b, 0));
  const lines = [`${'phase'.padEnd(width)} ${rounds.map((r) => `round ${r}`.padStart(10)).join(' ')}`];
  for (const phase of phases) lines.push(`${phase.padEnd(width)} ${rounds.map((r) => cell(byRound.get(r)!.get(phase))).join(' ')}`);
  lines.push(`${'round (sum of its phases)'.padEnd(width)} ${totals.map((t) => cell(t)).join(' ')}`);
  // The phase with the largest share of its rounds, and that share in each round.
  const share = (phase: string) => rounds.map((r, i) => (byRound.get(r)!.get(phase) ?? 0) / (totals[i] || 1));
  const largest = phases.reduce((best, p) => (Math.min(...share(p)) > Math.min(...share(best)) ? p : best), phases[0]);
  const shares = share(largest).map((s) => `${fmt(s * 100, 0)} %`);
  lines.push(`largest share of a round: ${largest} (${shares.join(', ')})`);
  return lines;
}
