import type { Host } from '../host/host.js';

/** /proc/<pid>/task/<tid>/stat's state letters, as `ps` names them. */
const STATE_NAMES: Record<string, string> = {
  R: 'running',
  S: 'sleeping',
  D: 'in uninterruptible wait (I/O or a fault)',
  Z: 'zombie',
  T: 'stopped',
  t: 'traced',
  X: 'dead',
  I: 'idle',
};

/** One thread of /proc/<pid>/task: its name, state and the kernel function it waits in. */
export interface ThreadState {
  tid: number;
  comm: string;
  state: string;
  wchan?: string;
  /** CPU time it has used, user + system, in clock ticks. */
  cpuTicks: number;
}

/** Fields after the parenthesised comm of a stat line (comm may hold spaces and parentheses). */
export function parseStatTail(stat: string): string[] | undefined {
  const close = stat.lastIndexOf(')');
  return close < 0
    ? undefined
    : stat
        .slice(close + 2)
        .trim()
        .split(' ');
}

/** Every thread of a process now; empty when it is gone. */
export async function threadStates(host: Host, pid: number): Promise<ThreadState[]> {
  const tasks = (await host.listDir(`/proc/${pid}/task`)) ?? [];
  const states: ThreadState[] = [];
  for (const t of tasks) {
    const dir = `/proc/${pid}/task/${t.name}`;
    const [stat, comm, wchan] = await Promise.all(['stat', 'comm', 'wchan'].map((f) => host.readFile(`${dir}/${f}`)));
    const fields = stat ? parseStatTail(stat) : undefined;
    if (!fields) continue;
    states.push({
      tid: Number(t.name),
      comm: (comm ?? '?').trim(),
      state: fields[0]!,
      // wchan reads "0" for a running thread.
      wchan: wchan && wchan.trim() !== '0' ? wchan.trim() : undefined,
      cpuTicks: Number(fields[11]) + Number(fields[12]),
    });
  }
  return states;
}

/**
 * What a process that should have exited is doing, in a sentence for a failure message: each thread's state and
 * where it waits, so "did not exit in time" says whether it was stuck (asleep on a lock), starved (running) or
 * waiting on the disk (D) — three different things to fix.
 */
export function describeThreadStates(states: ThreadState[]): string {
  if (states.length === 0) return 'the process is gone';
  return states
    .map((t) => `${t.comm}[${t.tid}] ${STATE_NAMES[t.state] ?? t.state}${t.wchan ? ` in ${t.wchan}` : ''}, ${t.cpuTicks} ticks of CPU`)
    .join('; ');
}
