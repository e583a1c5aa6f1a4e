/**
 * Delta debugging (Zeller's ddmin, complements only) of a failing sequence: drop chunks of calls, halving the chunk
 * size whenever no chunk can go, down to single calls, keeping every shorter sequence that still fails the same way;
 * the result is 1-minimal (no single call can be dropped). Pure: replaying a candidate is the caller's (the lab, reset
 * to the same state before each replay).
 */

/** Where a replayed sequence first failed, and how (two failures are the same one when their signatures are). */
export interface SequenceFailure {
  index: number;
  signature: string;
}

export interface ShrinkResult<T> {
  calls: T[];
  failure: SequenceFailure;
  /** Replays tried. */
  tests: number;
  /** Calls issued over all replays. */
  replayedCalls: number;
  /** Stopped by maxTests or the deadline before it was 1-minimal. */
  cutShort: boolean;
}

export interface ShrinkOptions {
  maxTests?: number;
  /** Date.now() after which no new replay starts. */
  deadline?: number;
  onTest?: (tests: number, length: number) => void;
}

export async function shrinkSequence<T>(
  calls: readonly T[],
  failure: SequenceFailure,
  replay: (candidate: T[]) => Promise<SequenceFailure | undefined>,
  opts: ShrinkOptions = {},
): Promise<ShrinkResult<T>> {
  const maxTests = opts.maxTests ?? 2000;
  // Nothing after the failing call matters.
  let current = calls.slice(0, failure.index + 1);
  let found = failure;
  let tests = 0;
  let replayedCalls = 0;
  const outOfBudget = () => tests >= maxTests || (opts.deadline !== undefined && Date.now() > opts.deadline);
  /** The candidate, cut after its failure, if it fails the same way. */
  const stillFails = async (candidate: T[]): Promise<T[] | undefined> => {
    tests++;
    replayedCalls += candidate.length;
    const f = await replay(candidate);
    opts.onTest?.(tests, current.length);
    if (!f || f.signature !== failure.signature) return undefined;
    found = f;
    return candidate.slice(0, f.index + 1);
  };

  // The failing call alone is the common case (a call whose answer does not depend on what came before).
  if (current.length > 1) {
    const alone = await stillFails([current[current.length - 1]!]);
    if (alone) current = alone;
  }
  let chunks = 2;
  let minimal = current.length === 1;
  while (current.length > 1 && !outOfBudget()) {
    const size = Math.ceil(current.length / chunks);
    let reduced = false;
    for (let start = 0; start < current.length && !outOfBudget(); start += size) {
      const shorter = await stillFails([...current.slice(0, start), ...current.slice(start + size)]);
      if (shorter) {
        current = shorter;
        chunks = Math.max(chunks - 1, 2);
        reduced = true;
        break;
      }
    }
    if (reduced) continue;
    if (size === 1) {
      minimal = true;
      break;
    }
    chunks = Math.min(current.length, chunks * 2);
  }
  return { calls: current, failure: found, tests, replayedCalls, cutShort: !minimal };
}
