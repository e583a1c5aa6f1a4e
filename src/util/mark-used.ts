import { utimes } from 'node:fs/promises';

/** Marks a cache dir as used now (its mtime), for caches that remove the least recently used first. */
export async function markUsed(dir: string): Promise<void> {
  const now = new Date();
  await utimes(dir, now, now).catch(() => undefined);
}
