import { existsSync, readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';

/** The quota of one cgroup dir in CPUs (cgroup v2's cpu.max, v1's CFS quota), or undefined where it has none. */
function quotaOf(dir: string): number | undefined {
  const read = (f: string) => (existsSync(join(dir, f)) ? readFileSync(join(dir, f), 'utf8').trim() : undefined);
  const v2 = read('cpu.max')?.split(/\s+/);
  if (v2 && v2[0] !== 'max') return Number(v2[0]) / Number(v2[1]);
  const v1 = Number(read('cpu.cfs_quota_us') ?? -1);
  if (v1 > 0) return v1 / Number(read('cpu.cfs_period_us') ?? 100_000);
  return undefined;
}

/**
 * The CPUs' worth of time this process may use: the machine's CPUs, or fewer under a CPU quota on its cgroup or a
 * parent of it (scripts/slow-machine.sh sets one: one core's worth on two). Read from /proc/self/cgroup; anything
 * unreadable counts as no quota.
 */
export function cpuBudget(): number {
  const cpus = availableParallelism();
  let quota = Number.POSITIVE_INFINITY;
  try {
    for (const line of readFileSync('/proc/self/cgroup', 'utf8').split('\n')) {
      const m = /^\d+:([^:]*):(\/.*)$/.exec(line);
      if (!m) continue;
      const [, controllers, path] = m as unknown as [string, string, string];
      const mounts =
        controllers === ''
          ? ['/sys/fs/cgroup']
          : controllers.split(',').includes('cpu')
            ? [...new Set(['/sys/fs/cgroup/cpu', `/sys/fs/cgroup/${controllers}`])]
            : [];
      for (const mount of mounts) {
        for (let p = path; ; p = dirname(p)) {
          const q = quotaOf(join(mount, p));
          if (q !== undefined) quota = Math.min(quota, q);
          if (p === '/') break;
        }
      }
    }
  } catch {}
  return Math.max(1, Math.min(cpus, Math.ceil(quota)));
}
