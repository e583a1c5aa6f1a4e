import type { Host } from '../host/host.js';
import { hostPageKb, type ProcessScanner } from './host-attribution.js';
import { type LabCgroup, labLockedKb } from './lab-cgroup.js';
import { TcelabError } from '../util/errors.js';

/**
 * The pinned-page counters tcelab checks, from /proc of any Host:
 * system-wide FOLL_PIN counts (/proc/vmstat) and Mlocked (/proc/meminfo), and
 * a process's VmLck/VmPin (/proc/<pid>/status). pinnedPages = acquired − released.
 */
export interface PinCounters {
  follPinAcquired: number;
  follPinReleased: number;
  pinnedPages: number;
  mlockedKb: number;
  /** Of the watched process, when one is watched and alive. */
  vmLckKb?: number;
  vmPinKb?: number;
  /**
   * With attribution (this machine's host samples): what the lab's neighbours
   * account themselves (Σ resident locked memory, Σ VmPin of every process not the lab's), and
   * the system-wide counters less that — the part only the lab can explain.
   */
  neighbourLockedKb?: number;
  neighbourPinnedKb?: number;
  unattributedMlockedKb?: number;
  unattributedPinnedPages?: number;
  /** Unevictable (mlocked) memory charged to the lab's own memory cgroup, where it has one (lab-cgroup.ts). */
  labLockedKb?: number;
}

/** "key value" lines (/proc/vmstat). */
export function parseVmstat(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    const m = /^(\w+)\s+(-?\d+)$/.exec(line.trim());
    if (m) out.set(m[1]!, Number(m[2]));
  }
  return out;
}

/** "Key:   value kB" lines (/proc/meminfo, /proc/<pid>/status): values in kB where the unit is kB. */
export function parseKbFields(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    const m = /^([\w()]+):\s+(\d+)(?:\s+kB)?$/.exec(line.trim());
    if (m) out.set(m[1]!, Number(m[2]));
  }
  return out;
}

/** RLIMIT_MEMLOCK from /proc/<pid>/limits, in bytes (Infinity for unlimited). */
export function parseMemlockLimit(limits: string): { soft: number; hard: number } | undefined {
  const m = /^Max locked memory\s+(\S+)\s+(\S+)\s+bytes/m.exec(limits);
  if (!m) return undefined;
  const v = (s: string) => (s === 'unlimited' ? Infinity : Number(s));
  return { soft: v(m[1]!), hard: v(m[2]!) };
}

/**
 * The base page size, in kB, of a host's kernel (4 or 64 on POWER: Debian ships both flavours), from the mappings of
 * the process that reads it (/proc/self/smaps: its first mapping is the program's text, in base pages).
 */
export async function kernelPageKb(host: Host): Promise<number> {
  const smaps = (await host.readFile('/proc/self/smaps')) ?? '';
  const kb = Number(/^KernelPageSize:\s+(\d+) kB/m.exec(smaps)?.[1]);
  if (!kb) throw new TcelabError(`read ${host.name}'s page size`, 'no KernelPageSize in /proc/self/smaps');
  return kb;
}

export class ProcCountersProbe {
  /**
   * `scanner`: attribute the system-wide counters to this machine's processes (see host-attribution.ts);
   * `labCgroup`: the lab's memory cgroup, once there is a lab and it has one.
   */
  constructor(
    readonly host: Host,
    private readonly scanner?: ProcessScanner,
    private readonly labCgroup?: () => LabCgroup | undefined,
  ) {}

  async read(pid?: number): Promise<PinCounters> {
    const cgroup = this.labCgroup?.();
    const [vmstatText, meminfoText, statusText, cgroupStat] = await Promise.all([
      this.host.readFile('/proc/vmstat'),
      this.host.readFile('/proc/meminfo'),
      pid ? this.host.readFile(`/proc/${pid}/status`) : Promise.resolve(undefined),
      cgroup ? this.host.readFile(cgroup.statFile) : Promise.resolve(undefined),
    ]);
    const vmstat = parseVmstat(vmstatText ?? '');
    const meminfo = parseKbFields(meminfoText ?? '');
    const acquired = vmstat.get('nr_foll_pin_acquired') ?? 0;
    const released = vmstat.get('nr_foll_pin_released') ?? 0;
    const c: PinCounters = {
      follPinAcquired: acquired,
      follPinReleased: released,
      pinnedPages: acquired - released,
      mlockedKb: meminfo.get('Mlocked') ?? 0,
    };
    if (this.scanner) {
      const a = this.scanner.scan(250);
      c.neighbourLockedKb = a.neighbourLockedKb;
      c.neighbourPinnedKb = a.neighbourPinnedKb;
      c.unattributedMlockedKb = c.mlockedKb - a.neighbourLockedKb;
      c.unattributedPinnedPages = c.pinnedPages - Math.round(a.neighbourPinnedKb / hostPageKb());
    }
    if (cgroup && cgroupStat) c.labLockedKb = labLockedKb(cgroupStat, cgroup.unevictableKey);
    if (statusText) {
      const status = parseKbFields(statusText);
      c.vmLckKb = status.get('VmLck') ?? 0;
      c.vmPinKb = status.get('VmPin') ?? 0;
    }
    return c;
  }

  async memlockLimit(pid: number): Promise<{ soft: number; hard: number } | undefined> {
    const t = await this.host.readFile(`/proc/${pid}/limits`);
    return t ? parseMemlockLimit(t) : undefined;
  }
}
