import { closeSync, openSync, readFileSync, readSync, readdirSync } from 'node:fs';
import { execFileSync } from 'node:child_process';

/**
 * The environment variable that marks a lab's processes: QEMU gets it, and
 * so does everything QEMU or a wrapper around it starts. Whatever carries a
 * lab's marker is that lab's; every other process on the machine is a
 * neighbour.
 */
export const LAB_MARKER_ENV = 'TCELAB_LAB';

/** A process of this machine with the memory it locks or pins. */
export interface ProcessMemory {
  pid: number;
  ppid: number;
  comm: string;
  /** Resident locked memory (smaps_rollup Locked, else VmLck). */
  lockedKb: number;
  vmPinKb: number;
}

/**
 * Who else locks and pins memory on this machine. The system-wide counters
 * the host verdicts read (Mlocked, FOLL_PIN pages) move with every process;
 * what a neighbour holds is visible in its own /proc/<pid>/status: VmLck
 * (mlock, mem-lock=on QEMUs) and VmPin (io_uring fixed buffers, RDMA). The
 * verdicts subtract the neighbours' change from the system's change, so a
 * neighbour that locks or pins memory during a run does not fail it, while
 * the lab's own leftovers (a process of the lab that outlives QEMU) still do.
 *
 * Limits: pages a neighbour pins without accounting them to its mm (transient
 * O_DIRECT I/O pins, a kernel driver's own pins, an exited process's io_uring
 * buffers until the kernel's deferred teardown unpins them) are not
 * attributable: the verdicts therefore only fail when the unattributed part
 * ends *above* its baseline (a lab cannot release what it did not pin), and
 * the release wait rides out transient pins. VmLck counts locked VMAs whole,
 * reserved-but-never-touched ones included (a mem-lock=on QEMU's VmLck is far
 * above its Mlocked share), so a process's resident locked memory is read
 * from its smaps (Rss of its locked mappings) where this controller may read
 * it; where it may not (another user's process, a container's init), its
 * VmLck stands in, and Mlocked keeps a small tolerance. A page two processes
 * lock counts twice here and once in Mlocked: that errs towards the
 * neighbours (a lab leak smaller than such overlap could hide; none seen).
 * Processes whose status cannot be read count as zero.
 */
export interface HostAttribution {
  /** Σ resident locked memory (smaps Locked, else VmLck) of processes that are not the lab's, kB. */
  neighbourLockedKb: number;
  /** Σ VmPin of processes that are not the lab's, kB. */
  neighbourPinnedKb: number;
  /** Their VmPin one by one (pid → kB, those with any). */
  neighbourPins: Record<number, number>;
  /** The lab's processes that are alive (QEMU, a wrapper's helpers). */
  lab: ProcessMemory[];
}

/**
 * Resident memory of a process's locked mappings (Σ Rss of the VMAs whose
 * VmFlags say `lo`), or its VmLck where its smaps cannot be read. Rss, not
 * smaps' `Locked:`: that one is a proportional share, and a shared library
 * page a QEMU locks counts whole in Mlocked but only 1/N in its Locked.
 */
export function residentLockedKb(pid: number, vmLckKb: number): number | undefined {
  if (vmLckKb === 0) return 0;
  let smaps: string;
  try {
    smaps = readFileSync(`/proc/${pid}/smaps`, 'utf8');
  } catch {
    return undefined;
  }
  return lockedRssKb(smaps);
}

/**
 * The few fields of /proc/<pid>/status a scan needs, read into one reused
 * buffer and parsed as bytes: a scan reads every process's status several
 * times a second, and strings for all of them would be garbage the
 * controller's memory slope then counts.
 */
const statusBuf = Buffer.alloc(8192);
const FIELDS = {
  name: Buffer.from('\nName:'),
  ppid: Buffer.from('\nPPid:'),
  vmLck: Buffer.from('\nVmLck:'),
  vmPin: Buffer.from('\nVmPin:'),
};

function readStatus(pid: number): { comm: string; ppid: number; vmLckKb: number; vmPinKb: number } | undefined {
  let n: number;
  try {
    const fd = openSync(`/proc/${pid}/status`, 'r');
    try {
      n = readSync(fd, statusBuf, 1, statusBuf.length - 1, null) + 1;
    } finally {
      closeSync(fd);
    }
  } catch {
    return undefined;
  }
  statusBuf[0] = 0x0a; // so the first line ("Name:") matches like the others
  const view = statusBuf.subarray(0, n);
  const number = (field: Buffer) => {
    let i = view.indexOf(field);
    if (i < 0) return 0;
    i += field.length;
    while (i < n && (view[i] === 0x20 || view[i] === 0x09)) i++;
    let v = 0;
    while (i < n && view[i]! >= 0x30 && view[i]! <= 0x39) v = v * 10 + view[i++]! - 0x30;
    return v;
  };
  const at = view.indexOf(FIELDS.name);
  let start = at + FIELDS.name.length;
  while (start < n && (view[start] === 0x20 || view[start] === 0x09)) start++;
  const end = view.indexOf(0x0a, start);
  return {
    comm: at < 0 ? '?' : view.toString('utf8', start, end < 0 ? n : end),
    ppid: number(FIELDS.ppid),
    vmLckKb: number(FIELDS.vmLck),
    vmPinKb: number(FIELDS.vmPin),
  };
}

/** Σ Rss of the locked VMAs in a /proc/<pid>/smaps text; undefined if it has no VmFlags lines. */
export function lockedRssKb(smaps: string): number | undefined {
  let rss = 0;
  let total = 0;
  let flagsSeen = false;
  for (const line of smaps.split('\n')) {
    if (line.startsWith('Rss:')) rss = Number(/(\d+)/.exec(line)?.[1] ?? 0);
    else if (line.startsWith('VmFlags:')) {
      flagsSeen = true;
      if (/ lo\b/.test(line)) total += rss;
      rss = 0;
    }
  }
  return flagsSeen ? total : undefined;
}

let pageKb: number | undefined;
/** This machine's base page size in kB (4 on x86, 64 on most POWER lab hosts). */
export function hostPageKb(): number {
  if (pageKb === undefined) {
    try {
      pageKb = Number(execFileSync('getconf', ['PAGESIZE'], { encoding: 'utf8' }).trim()) / 1024 || 4;
    } catch {
      pageKb = 4;
    }
  }
  return pageKb;
}

/** Scans /proc: which processes carry a lab's marker, and what everybody else locks and pins. */
export class ProcessScanner {
  /**
   * Whether a pid belongs to the lab, with the command name it had then: a
   * process's environment changes only when it execs, and an exec changes its
   * name (a forked child shows its parent's environment until it execs).
   */
  private readonly isLab = new Map<number, { lab: boolean; comm: string }>();

  constructor(
    private readonly labName: () => string | undefined,
    private readonly selfPid = process.pid,
  ) {}

  private last: { at: number; result: HostAttribution } | undefined;

  /**
   * `maxAgeMs`: a scan this recent is reused. A scan reads every process's
   * status (≈40 µs each: 3 ms for 75 processes here), too much for every
   * 20 Hz sample; the host probe takes one at most every 250 ms.
   */
  scan(maxAgeMs = 0): HostAttribution {
    if (this.last && Date.now() - this.last.at <= maxAgeMs) return this.last.result;
    const result = this.scanNow();
    this.last = { at: Date.now(), result };
    return result;
  }

  private scanNow(): HostAttribution {
    const name = this.labName();
    const marker = name ? `${LAB_MARKER_ENV}=${name}` : undefined;
    const out: HostAttribution = { neighbourLockedKb: 0, neighbourPinnedKb: 0, neighbourPins: {}, lab: [] };
    const alive = new Set<number>();
    for (const entry of readdirSync('/proc')) {
      const pid = Number(entry);
      if (!Number.isInteger(pid) || pid <= 0) continue;
      const status = readStatus(pid);
      if (!status) continue; // exited while we looked
      alive.add(pid);
      const lockedKb = this.residentLocked(pid, status.vmLckKb);
      const vmPinKb = status.vmPinKb;
      const comm = status.comm;
      const lab = marker !== undefined && pid !== this.selfPid && this.belongsToLab(pid, comm, marker);
      if (lab) {
        out.lab.push({ pid, ppid: status.ppid, comm, lockedKb, vmPinKb });
      } else {
        out.neighbourLockedKb += lockedKb;
        out.neighbourPinnedKb += vmPinKb;
        if (vmPinKb > 0) out.neighbourPins[pid] = vmPinKb;
      }
    }
    for (const pid of this.isLab.keys()) if (!alive.has(pid)) this.isLab.delete(pid);
    for (const pid of this.smapsDenied) if (!alive.has(pid)) this.smapsDenied.delete(pid);
    return out;
  }

  /** Pids whose smaps this controller may not read: their VmLck stands in, without asking again. */
  private readonly smapsDenied = new Set<number>();

  private residentLocked(pid: number, vmLckKb: number): number {
    if (vmLckKb === 0 || this.smapsDenied.has(pid)) return vmLckKb;
    const kb = residentLockedKb(pid, vmLckKb);
    if (kb === undefined) this.smapsDenied.add(pid);
    return kb ?? vmLckKb;
  }

  private belongsToLab(pid: number, comm: string, marker: string): boolean {
    const known = this.isLab.get(pid);
    if (known && known.comm === comm) return known.lab;
    let lab: boolean;
    try {
      lab = readFileSync(`/proc/${pid}/environ`, 'latin1').split('\0').includes(marker);
    } catch {
      lab = false; // not ours to read: not a process this controller started
    }
    this.isLab.set(pid, { lab, comm });
    return lab;
  }
}

/** `pid 812 (lock-holder, parent 1): locked 8192 kB, VmPin 0 kB` */
export function describeProcessMemory(p: ProcessMemory): string {
  return `pid ${p.pid} (${p.comm}, parent ${p.ppid}): locked ${p.lockedKb} kB, VmPin ${p.vmPinKb} kB`;
}
