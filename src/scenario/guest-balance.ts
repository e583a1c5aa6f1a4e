import type { AgentClient } from '../agent/agent-client.js';
import type { PinHolder } from '../agent/types.js';
import type { CheckRecorder } from './checks.js';
import type { Progress } from '../util/progress.js';
import { PollTimeoutError, pollUntil } from '../util/poll.js';
import { pinnedPages, settledAfterRcuBarriers } from './guest-pins.js';

/** `pid 412 (holder "tcelab-agent worker", parent 1): fd 5 → /dev/vfio/vfio (container); VmLck 16384 kB` */
export function describeHolder(h: PinHolder): string {
  const fds = h.fds.map((f) => `fd ${f.fd} → ${f.target} (${f.kind})`).join(', ');
  const mem = [h.vmLckKb ? `VmLck ${h.vmLckKb} kB` : '', h.vmPinKb ? `VmPin ${h.vmPinKb} kB` : ''].filter(Boolean).join(', ');
  const cmd = h.cmdline && h.cmdline !== h.comm ? ` "${h.cmdline}"` : '';
  return `pid ${h.pid} (${h.comm}${cmd}, parent ${h.ppid})${fds ? `: ${fds}` : ''}${mem ? `${fds ? ';' : ':'} ${mem}` : ''}`;
}

/** Every holder on one line each, or a sentence saying there is none. */
export function describeHolders(holders: PinHolder[]): string {
  return holders.length ? holders.map(describeHolder).join('; ') : 'no guest process holds a VFIO fd or locked memory';
}

/** Locked memory the guest's processes account (Σ VmLck), in kB. */
export const lockedKb = (holders: PinHolder[]) => holders.reduce((sum, h) => sum + h.vmLckKb, 0);

/** The guest's pins and its processes' locked memory when the agent came up. */
export interface GuestBalanceBaseline {
  pinnedPages: number;
  lockedKb: number;
  /** Processes that already held something then (they are not the run's doing). */
  holders: PinHolder[];
}

/**
 * A scenario that means to leave pins behind at shutdown says so: the
 * balance is then not a verdict (shutdown-release powers a guest off with
 * pins held on purpose). `knownDefect` instead keeps the verdict and names a
 * documented kernel defect that explains exactly `pages` left pinned.
 */
export interface KeptGuestPins {
  reason: string;
  pages?: number;
  knownDefect?: string;
}

export async function takeGuestBalanceBaseline(agent: AgentClient): Promise<GuestBalanceBaseline> {
  const [counters, holders] = await Promise.all([agent.counters(), agent.pinHolders()]);
  return { pinnedPages: pinnedPages(counters), lockedKb: lockedKb(holders), holders };
}

/**
 * Just before the guest is shut down: its pinned pages and its processes'
 * locked memory must be back where they were when the agent came up. Pins are
 * put lazily (a registration's pages are unpinned by an RCU callback, about a
 * second after it goes, more on a loaded machine), so the verdict waits up to `settleMs` for the
 * balance — or, for pins a declared defect explains, until they have held
 * still for a second — before judging. When it does not hold, every process
 * that could hold the pages is named.
 */
export async function judgeGuestBalance(
  agent: AgentClient,
  baseline: GuestBalanceBaseline,
  checks: CheckRecorder,
  progress: Progress,
  kept: KeptGuestPins | undefined,
  settleMs = 10_000,
): Promise<void> {
  if (kept && kept.pages === undefined) {
    progress.info(`  (guest balance not judged: the scenario keeps pins at shutdown on purpose — ${kept.reason})`);
    return;
  }
  const t0 = Date.now();
  let pins = 0;
  let holders: PinHolder[] = [];
  let explainedSince: number | undefined;
  let barrier = true;
  let atRest = false;
  await pollUntil(
    "the guest's pins and locked memory back to the baseline",
    async () => {
      const [c, h] = await Promise.all([agent.counters(), agent.pinHolders()]);
      pins = pinnedPages(c) - baseline.pinnedPages;
      holders = h;
      const balanced = pins === 0 && lockedKb(h) === baseline.lockedKb;
      explainedSince = kept?.knownDefect !== undefined && pins === kept.pages ? (explainedSince ?? Date.now()) : undefined;
      if (balanced || (explainedSince !== undefined && Date.now() - explainedSince >= 1000)) return true;
      // The steps are over: once RCU barriers show the pins at rest, what is left stays (guest-pins.ts).
      const rest = barrier ? await settledAfterRcuBarriers(agent) : undefined;
      if (!rest) {
        barrier = false;
        return undefined;
      }
      holders = await agent.pinHolders();
      pins = pinnedPages(rest) - baseline.pinnedPages;
      atRest = true;
      return true;
    },
    { timeoutMs: settleMs, intervalMs: 100 },
  ).catch((err: unknown) => {
    // Not settled within settleMs: the checks below say what is left.
    if (!(err instanceof PollTimeoutError)) throw err;
  });
  const locked = lockedKb(holders) - baseline.lockedKb;
  const newHolders = holders.filter(
    (h) => !baseline.holders.some((b) => b.pid === h.pid && b.vmLckKb === h.vmLckKb && b.fds.length === h.fds.length),
  );
  const explained = kept?.knownDefect !== undefined && pins === kept.pages && locked === 0;
  const who = newHolders.length
    ? describeHolders(newHolders)
    : 'no guest process holds a VFIO fd or locked memory (the pins belong to no live process)';
  checks.record(
    'guest: pinned pages back to the agent-up baseline before shutdown',
    pins === 0,
    0,
    pins,
    pins === 0
      ? `settled ${Date.now() - t0} ms after the last step`
      : `${pins} pages still pinned${atRest ? ' at rest after RCU barriers in the guest' : ''}; ${who}`,
    explained ? `${kept!.knownDefect} (${kept!.reason})` : undefined,
  );
  checks.record(
    'guest: locked memory of its processes (Σ VmLck) back to the agent-up baseline before shutdown',
    locked === 0,
    `${baseline.lockedKb} kB`,
    `${lockedKb(holders)} kB`,
    locked === 0 ? undefined : who,
  );
}
