/**
 * How long each kind of awaited event took on this machine, in this process: the figure a late event's message names
 * ("usually 180 ms here"), so that a timeout on a slow or busy machine says how far off its usual pace it was. Machines
 * of this kind differ about 2× in speed; nothing here is a verdict, only the words of one.
 */
const durations = new Map<string, number[]>();

/** Keeps the last 50 of each kind: enough for a median, bounded for a long soak. */
const KEPT = 50;

export function recordDuration(kind: string, ms: number): void {
  const list = durations.get(kind) ?? [];
  list.push(ms);
  if (list.length > KEPT) list.shift();
  durations.set(kind, list);
}

/** The median of what was recorded, or undefined before the first. */
export function usualMs(kind: string): number | undefined {
  const list = [...(durations.get(kind) ?? [])].sort((a, b) => a - b);
  return list.length ? list[Math.floor(list.length / 2)] : undefined;
}

/** "usually 180 ms here (median of 7, at most 420 ms)", or that it has not been seen here yet. */
export function usualDuration(kind: string): string {
  const list = [...(durations.get(kind) ?? [])].sort((a, b) => a - b);
  if (!list.length) return 'not yet seen to finish on this machine in this run';
  const median = list[Math.floor(list.length / 2)]!;
  return `usually ${median} ms here (median of ${list.length}, at most ${list.at(-1)} ms)`;
}
