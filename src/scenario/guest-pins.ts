import type { AgentClient } from '../agent/agent-client.js';
import type { GuestCounters } from '../agent/types.js';

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
  let c = await agent.counters(opts.pid);
  while (!done(c) && Date.now() - t0 < opts.timeoutMs) {
    await new Promise((r) => setTimeout(r, opts.intervalMs ?? 50));
    c = await agent.counters(opts.pid);
  }
  return { counters: c, ok: done(c), elapsedMs: Date.now() - t0 };
}
