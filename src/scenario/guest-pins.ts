import type { AgentClient } from '../agent/agent-client.js';
import type { GuestCounters } from '../agent/types.js';
import { PollTimeoutError, pollUntil } from '../util/poll.js';

/** Pages pinned now (FOLL_PIN acquired − released), from a guest counters sample. */
export function pinnedPages(c: GuestCounters): number {
  return c.nrFollPinAcquired - c.nrFollPinReleased;
}

/** At most this many barriers per settle: counters still moving after them are left to the caller's ceiling. */
const SETTLE_BARRIERS = 5;

/**
 * The guest's counters once nothing set in motion can still change them: read after an RCU barrier in the guest
 * kernel (guest/agent/counters.c), until two such reads in a row agree on the pinned pages and the process's VmLck.
 * A registration's pins are put by an RCU callback (mm_iommu_release → call_rcu(mm_iommu_free)), so once the event that
 * queues it is over (an ioctl returned, a process reaped), two quiet barriers say the release landed or never will —
 * the event a wait for it can end on, where a ceiling only bounds it. Undefined when the kernel gives no barrier (no
 * TUN driver) or the counters kept moving: the caller waits to its ceiling as before.
 */
export async function settledAfterRcuBarriers(agent: AgentClient, pid?: number): Promise<GuestCounters | undefined> {
  let last: GuestCounters | undefined;
  for (let i = 0; i < SETTLE_BARRIERS; i++) {
    const c = await agent.counters(pid, { rcuBarrier: true });
    if (!c.rcuBarrier || 'error' in c.rcuBarrier) return undefined;
    if (last && pinnedPages(last) === pinnedPages(c) && last.process?.vmLckKb === c.process?.vmLckKb) return c;
    last = c;
  }
  return undefined;
}

/** A promise that never settles: what a wait races against when no event can end it early. */
export const NEVER = new Promise<never>(() => {});

/**
 * settledAfterRcuBarriers as an event to race a wait against: resolves once the counters are at rest, and never
 * when they cannot be told to be (no barrier, still moving, the agent gone) — the wait's own ceiling then decides.
 */
export function atRestAfterRcuBarriers(agent: AgentClient, pid?: number): Promise<GuestCounters> {
  return settledAfterRcuBarriers(agent, pid).then(
    (c) => c ?? NEVER,
    () => NEVER,
  );
}

/**
 * Polls the guest's counters until `done` holds or the timeout passes. A release is put by an RCU callback after
 * the event, so a verdict must wait for it rather than read it once; with `settle` (the event is over: the ioctl
 * returned, the process was reaped) the wait also ends once RCU barriers show the counters at rest
 * (settledAfterRcuBarriers): a release that never comes is then told in a barrier's time, not the ceiling's.
 */
export async function waitForCounters(
  agent: AgentClient,
  done: (c: GuestCounters) => boolean,
  opts: {
    timeoutMs: number;
    pid?: number;
    intervalMs?: number;
    /** true: the event is over; a function: asked at each poll whether it is over yet (then barriers may end the wait). */
    settle?: boolean | (() => Promise<boolean>);
  },
): Promise<{ counters: GuestCounters; ok: boolean; elapsedMs: number; settledByRcuBarrier?: boolean }> {
  const t0 = Date.now();
  let c: GuestCounters | undefined;
  let barrier = opts.settle !== undefined && opts.settle !== false;
  let settled = false;
  const over = typeof opts.settle === 'function' ? opts.settle : async () => true;
  const ok = await pollUntil(
    "the guest's counters to reach the awaited state",
    async () => {
      c = await agent.counters(opts.pid);
      if (done(c)) return true;
      if (!barrier || !(await over())) return undefined;
      const rest = await settledAfterRcuBarriers(agent, opts.pid);
      // No barrier here (or still moving): poll to the ceiling from now on.
      if (!rest) barrier = false;
      else {
        c = rest;
        settled = true;
      }
      return rest ? done(rest) || 'settled' : undefined;
    },
    { timeoutMs: opts.timeoutMs, intervalMs: opts.intervalMs ?? 50 },
  ).catch((err: unknown) => {
    // Not there within the timeout: the caller judges the last sample.
    if (err instanceof PollTimeoutError) return false;
    throw err;
  });
  return { counters: c!, ok: ok === true, elapsedMs: Date.now() - t0, ...(settled && ok !== true ? { settledByRcuBarrier: true } : {}) };
}
