import { mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pollUntil } from './poll.js';
import type { Progress } from './progress.js';

/** How long a holder may keep a lock before a waiter gives up. */
const WAIT_MS = 15 * 60_000;
/** A lock without a holder's pid this old was left by a holder that died between mkdir and writing its pid. */
const ORPHAN_MS = 30_000;

/**
 * Runs `fn` holding the lock at `dir` (one holder across processes: mkdir is atomic). A lock whose holder died is
 * taken over; a waiter says whom it waits for.
 */
export async function withLock<T>(
  dir: string,
  what: string,
  progress: Progress,
  fn: () => Promise<T>,
  opts: { waitMs?: number } = {},
): Promise<T> {
  let holder = '';
  let said = false;
  await pollUntil(
    `the lock ${dir} (to ${what})`,
    async () => {
      for (;;) {
        try {
          await mkdir(dir);
          return true;
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
        }
        holder = await holderOf(dir);
        if (holder !== 'gone') break;
        // Its holder died: take it over at once.
        await rm(dir, { recursive: true, force: true });
      }
      if (!said) progress.info(`${what}: waiting for ${holder}, which is doing it already`);
      said = true;
      return undefined;
    },
    {
      timeoutMs: opts.waitMs ?? WAIT_MS,
      intervalMs: 500,
      lastSeen: () => `held by ${holder}`,
      hint: `if it is stuck, stop it, or remove ${dir}`,
    },
  );
  await writeFile(join(dir, 'pid'), `${process.pid}\n`);
  try {
    return await fn();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** 'pid N' while the holder lives; 'gone' when it died (or never wrote its pid and the lock is old). */
async function holderOf(dir: string): Promise<string> {
  const pid = Number((await readFile(join(dir, 'pid'), 'utf8').catch(() => '')).trim());
  if (!pid) {
    const age = await stat(dir).then(
      (s) => Date.now() - s.mtimeMs,
      () => 0,
    );
    return age > ORPHAN_MS ? 'gone' : 'a process starting to';
  }
  try {
    process.kill(pid, 0);
    return `pid ${pid}`;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM' ? `pid ${pid}` : 'gone';
  }
}
