import type { AgentClient } from '../agent/agent-client.js';
import type { GuestCounters } from '../agent/types.js';
import { PollTimeoutError, pollUntil } from '../util/poll.js';

/** Pages pinned now (FOLL_PIN acquired − released), from a guest counters sample. */
export function pinnedPages(c: GuestCounters): number {
  return c.nrFollPinAcquired - c.nrFollPinReleased;
}

/**
 * Polls the guest's counters until `done` holds or the timeout passes.
 * nr_foll_pin_released is updated lazily (~1 s after an unpin), so a verdict
 * must wait for it rather than read it once.
 */
export async function waitForCounters(
  agent: AgentClient,
  done: (c: GuestCounters) => boolean,
  opts: { timeoutMs: number; pid?: number; intervalMs?: number },
): Promise<{ counters: GuestCounters; ok: boolean; elapsedMs: number }> {
  const t0 = Date.now();
  let c: GuestCounters | undefined;
  const ok = await pollUntil(
    "the guest's counters to reach the awaited state",
    async () => {
      c = await agent.counters(opts.pid);
      return done(c) || undefined;
    },
    { timeoutMs: opts.timeoutMs, intervalMs: opts.intervalMs ?? 50 },
  ).catch((err: unknown) => {
    // Not there within the timeout: the caller judges the last sample.
    if (err instanceof PollTimeoutError) return false;
    throw err;
  });
  return { counters: c!, ok, elapsedMs: Date.now() - t0 };
}
