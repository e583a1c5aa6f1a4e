import { readFile, writeFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { cacheDir } from '../util/paths.js';

/** How long each profile last took from spawn to init: the boot bar's yardstick. */
const bootTimesFile = () => join(cacheDir(), 'boot-times.json');

/** How long a boot of this profile should take: its last one, else 8 s. */
export async function expectedBootMs(profile: string): Promise<number> {
  try {
    const t = JSON.parse(await readFile(bootTimesFile(), 'utf8')) as Record<string, number>;
    return t[profile] ?? 8000;
  } catch {
    return 8000;
  }
}

/** Remembers how long a profile took to boot, so the next boot's bar means something. */
export async function recordBootMs(profile: string, ms: number): Promise<void> {
  try {
    let t: Record<string, number> = {};
    try {
      t = JSON.parse(await readFile(bootTimesFile(), 'utf8')) as Record<string, number>;
    } catch {}
    t[profile] = ms;
    await mkdir(cacheDir(), { recursive: true });
    await writeFile(bootTimesFile(), `${JSON.stringify(t)}\n`);
  } catch {
    // Best effort: a read-only cache only costs the bar its accuracy.
  }
}
