import { mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { TcelabError } from './errors.js';
import type { Progress } from './progress.js';

/** How long a holder may keep a lock before a waiter gives up. */
const WAIT_MS = 15 * 60_000;
/** A lock without a holder's pid this old was left by a holder that died between mkdir and writing its pid. */
const ORPHAN_MS = 30_000;

/**
 * Runs `fn` holding the lock at `dir` (one holder across processes: mkdir is atomic). A lock whose holder died is
 * taken over; a waiter says whom it waits for.
 */
export async function withLock<T>(dir: string, what: string, progress: Progress, fn: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + WAIT_MS;
  let said = false;
  for (;;) {
    try {
      await mkdir(dir);
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const holder = await holderOf(dir);
    if (holder === 'gone') {
      await rm(dir, { recursive: true, force: true });
      continue;
    }
    if (Date.now() > deadline)
      throw new TcelabError(
        what,
        `another process (${holder}) has held ${dir} for ${WAIT_MS / 60_000} min`,
        `if it is stuck, stop it, or remove ${dir}`,
      );
    if (!said) progress.info(`${what}: waiting for ${holder}, which is doing it already`);
    said = true;
    await new Promise((r) => setTimeout(r, 500));
  }
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
