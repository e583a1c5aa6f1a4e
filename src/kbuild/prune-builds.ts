import { existsSync } from 'node:fs';
import { readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { sourceCacheDir } from './kernel-source.js';
import { kernelBuildDir } from './lab-kernel.js';

/**
 * How many of each kind of kernel build state the cache keeps, the least recently used going first: a history's
 * export is a whole source tree (≈1.6 GB), a build dir ≈150 MB, an unpacked Debian source with its git ≈2.2 GB.
 * Enough for a matrix of two sources, a bisection and the suite's own kernel at once. Each marks itself used
 * (util/mark-used.ts) when a build takes it.
 */
const KEPT = { exports: 4, builds: 8, sources: 4 } as const;

/** Each kind's dirs: where they are and which entries are of the kind. */
const KINDS: Record<keyof typeof KEPT, { parent: (cache: string) => string; is: (name: string) => boolean }> = {
  exports: { parent: sourceCacheDir, is: (n) => /^tree-[0-9a-f]{12}$/.test(n) },
  builds: { parent: kernelBuildDir, is: (n) => !n.endsWith('.lock') },
  sources: { parent: sourceCacheDir, is: (n) => /^linux-source-/.test(n) && !/\.(lock|unpacking-\d+)$/.test(n) },
};

/**
 * Removes what is beyond each kind's count, least recently used first; a dir whose lock is held (being built,
 * exported or unpacked now) is never removed. Returns what was removed.
 */
export async function pruneKernelBuilds(cache: string): Promise<string[]> {
  const removed: string[] = [];
  for (const [kind, { parent, is }] of Object.entries(KINDS) as Array<[keyof typeof KEPT, (typeof KINDS)[keyof typeof KEPT]]>) {
    const dir = parent(cache);
    const names = (await readdir(dir).catch(() => [] as string[])).filter(is);
    const dated = await Promise.all(
      names.map(async (n) => ({ path: join(dir, n), at: (await stat(join(dir, n)).catch(() => undefined))?.mtimeMs ?? 0 })),
    );
    for (const old of dated.sort((a, b) => b.at - a.at).slice(KEPT[kind])) {
      if (existsSync(`${old.path}.lock`)) continue;
      await rm(old.path, { recursive: true, force: true });
      removed.push(old.path);
    }
  }
  return removed;
}
