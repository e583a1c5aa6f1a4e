import { existsSync, mkdirSync, readFileSync, readdirSync, rmdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

/**
 * A memory cgroup of the lab's own: QEMU starts in it, and so does whatever
 * QEMU or a wrapper around it starts. The kernel charges each page to the
 * cgroup of the process that faulted it, so the cgroup's unevictable memory
 * (mlocked pages) is the lab's and nobody else's: no neighbour, seen or not
 * (a process of another container or pid namespace, whose /proc this
 * controller cannot read, moves the system-wide Mlocked all the same: seen
 * in CI, +232 MB during a run with no process of ours that locked anything),
 * can move it.
 *
 * Limits: a page charged elsewhere first (a shared library's page cache a
 * neighbour faulted in) is locked by the lab without counting here, and page
 * cache the lab faulted first that a neighbour locks is left out (labLockedKb);
 * pinned
 * (FOLL_PIN) pages have no per-cgroup counter, so that verdict stays
 * system-wide less what the neighbours account (host-attribution.ts). Needs a
 * writable memory controller: cgroup v1's `memory` hierarchy, or v2 where the
 * controller's own cgroup delegates memory to its children. Elsewhere (not
 * root, a v2 cgroup that holds processes) there is none, and the Mlocked
 * verdict falls back to the neighbours' accounting.
 */
export interface LabCgroup {
  /** Write a pid here to move that process (its children follow). */
  readonly procsFile: string;
  /** memory.stat of the cgroup. */
  readonly statFile: string;
  /** The key of memory.stat that counts unevictable bytes, this cgroup and below. */
  readonly unevictableKey: string;
  remove(): void;
}

/** Unevictable (mlocked) memory in kB from a memory.stat text, or undefined. */
export function unevictableKb(stat: string, key: string): number | undefined {
  const m = new RegExp(`^${key} (\\d+)$`, 'm').exec(stat);
  return m ? Math.round(Number(m[1]) / 1024) : undefined;
}

/** memory.stat's anonymous and shared memory of a cgroup and below, in either hierarchy. */
const ANON_KEYS: Record<string, string[]> = { total_unevictable: ['total_rss', 'total_shmem'], unevictable: ['anon', 'shmem'] };

/**
 * The lab's mlocked memory from its cgroup's memory.stat: the unevictable memory, but no more than the cgroup's
 * anonymous and shared memory. A page-cache page the lab faulted first stays charged to it when a neighbour locks
 * it (seen: a mem-lock=on lab of the same staged QEMU locked 1.3 MB of that QEMU's pages, which this lab had read
 * first); what a lab locks and can leave behind (a helper's heap, a memfd) is anonymous or shared memory.
 */
export function labLockedKb(stat: string, key: string): number | undefined {
  const locked = unevictableKb(stat, key);
  if (locked === undefined) return undefined;
  const own = (ANON_KEYS[key] ?? []).map((k) => unevictableKb(stat, k));
  if (own.length === 0 || own.some((x) => x === undefined)) return locked;
  return Math.min(locked, own.reduce((a, b) => a! + b!, 0)!);
}

/** Where this process's memory cgroup is, in either hierarchy, from /proc/self/cgroup. */
function ownMemoryCgroup(): { dir: string; key: string } | undefined {
  let lines: string[];
  try {
    lines = readFileSync('/proc/self/cgroup', 'utf8').split('\n');
  } catch {
    return undefined;
  }
  const v1 = lines.map((l) => l.split(':')).find((f) => f.length >= 3 && f[1]!.split(',').includes('memory'));
  if (v1 && existsSync('/sys/fs/cgroup/memory/memory.stat'))
    return { dir: join('/sys/fs/cgroup/memory', v1[2]!), key: 'total_unevictable' };
  const v2 = lines.map((l) => l.split(':')).find((f) => f[0] === '0' && f[1] === '');
  if (v2 && existsSync('/sys/fs/cgroup/cgroup.controllers')) return { dir: join('/sys/fs/cgroup', v2[2]!), key: 'unevictable' };
  return undefined;
}

/**
 * Whether a lab here will likely get a memory cgroup of its own (createLabCgroup can still fail): then its Mlocked is
 * judged on that cgroup, and the host baseline need not wait for the neighbours' locked memory to hold still.
 */
export function labCgroupExpected(): boolean {
  return usableOwnCgroup() !== undefined;
}

/** Our own memory cgroup, where labs may make theirs under it (not turned off by TCELAB_NO_CGROUP=1). */
function usableOwnCgroup(): { dir: string; key: string } | undefined {
  return process.platform !== 'linux' || process.env.TCELAB_NO_CGROUP === '1' ? undefined : ownMemoryCgroup();
}

/** A new memory cgroup for the lab named `labName`, or undefined where this machine offers none. */
export function createLabCgroup(labName: string): LabCgroup | undefined {
  const own = usableOwnCgroup();
  if (!own) return undefined;
  sweepEmptyLabCgroups(own.dir);
  const dir = join(own.dir, labName);
  try {
    mkdirSync(dir);
  } catch {
    return undefined;
  }
  const cgroup: LabCgroup = {
    procsFile: join(dir, 'cgroup.procs'),
    statFile: join(dir, 'memory.stat'),
    unevictableKey: own.key,
    remove: () => {
      try {
        rmdirSync(dir);
      } catch {
        // A process of the lab still in it (the host verdicts name it): a later lab removes the cgroup once it is empty.
      }
    },
  };
  // v2 gives a child memory.stat only where its parent delegates the memory controller.
  if (!existsSync(cgroup.statFile)) {
    cgroup.remove();
    return undefined;
  }
  return cgroup;
}

/**
 * Removes lab cgroups left by runs whose leftover process has since exited. Only those older than ten minutes: a
 * younger empty one may be a concurrent lab's, made but not yet holding its QEMU.
 */
function sweepEmptyLabCgroups(parent: string): void {
  let entries: string[];
  try {
    entries = readdirSync(parent).filter((e) => e.startsWith('tcelab-'));
  } catch {
    return;
  }
  for (const e of entries) {
    const dir = join(parent, e);
    try {
      if (Date.now() - statSync(dir).mtimeMs < 600_000) continue;
      if (readFileSync(join(dir, 'cgroup.procs'), 'utf8').trim() === '') rmdirSync(dir);
    } catch {
      // gone meanwhile, or not ours to remove
    }
  }
}
