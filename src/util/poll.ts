import { TcelabError } from './errors.js';
import { recordDuration, usualMs } from './usual.js';

export interface PollOptions {
  /** Give up once this long has passed since the first probe. */
  timeoutMs: number;
  /** The pause between two probes (0: probe again at once, for a probe that waits by itself). */
  intervalMs: number;
  /**
   * How long this usually takes, for the message of a wait that gave up: 60 s against a usual 0.4 s says more than 60 s
   * alone. Without it, the median of the same waits (by `what`) that ended in time on this machine, in this process.
   */
  usualMs?: number;
  /** Ends the wait early: pollUntil then rejects with the signal's reason. */
  signal?: AbortSignal;
  /** What to do about a wait that gave up (the error's hint). */
  hint?: string;
  /** The last thing the probe saw (its last error, the state it found), for the message of a wait that gave up. */
  lastSeen?: () => string | undefined;
}

/** A wait that gave up: says what it waited for, how long, and (when known) how long that usually takes. */
export class PollTimeoutError extends TcelabError {
  constructor(
    readonly waitedFor: string,
    readonly waitedMs: number,
    readonly usualMs: number | undefined,
    lastSeen: string | undefined,
    hint?: string,
  ) {
    const usual = usualMs === undefined ? '' : ` (it usually takes ${formatWait(usualMs)})`;
    super(`wait for ${waitedFor}`, `gave up after ${formatWait(waitedMs)}${usual}${lastSeen ? `; last: ${lastSeen}` : ''}`, hint);
    this.name = 'PollTimeoutError';
  }
}

/**
 * Probes until the probe gives a value (anything but undefined) and resolves with it, recording how long that took as
 * this machine's usual for `what` (util/usual.ts); throws a PollTimeoutError once `timeoutMs` has passed without one.
 * A probe that throws ends the wait with its error (a migration that failed is not worth waiting on). The first probe
 * runs at once; each later one `intervalMs` after the previous one ended.
 */
export async function pollUntil<T>(what: string, probe: () => Promise<T | undefined> | T | undefined, opts: PollOptions): Promise<T> {
  const t0 = Date.now();
  for (;;) {
    opts.signal?.throwIfAborted();
    const value = await probe();
    const waitedMs = Date.now() - t0;
    if (value !== undefined) {
      recordDuration(what, waitedMs);
      return value;
    }
    if (waitedMs >= opts.timeoutMs) throw new PollTimeoutError(what, waitedMs, opts.usualMs ?? usualMs(what), opts.lastSeen?.(), opts.hint);
    if (opts.intervalMs > 0) await pause(opts.intervalMs, opts.signal);
  }
}

/** Resolves after `ms`, or at once when the signal aborts (the loop then throws its reason). */
function pause(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const onAbort = () => {
      clearTimeout(timer);
      resolve();
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** 350 ms, 4.2 s, 15 min. */
function formatWait(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 120_000) return `${Number((ms / 1000).toFixed(1))} s`;
  return `${Number((ms / 60_000).toFixed(1))} min`;
}
