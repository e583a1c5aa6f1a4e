import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';

/** The record file of the last build in an O= dir. */
export const BUILD_RECORD = 'tcelab-build.json';

/**
 * A build made in a fresh O= dir (no vmlinux there before it): every object compiled or fetched from ccache. Kept in
 * the dir's record across the incremental builds after it, so that the last cold build of a tree stays known.
 */
export interface ColdBuild {
  /** When it finished (ISO 8601). */
  at: string;
  ms: number;
  /** Objects compiled (a ccache hit counts: make prints it as a compile). */
  objects: number;
  /** Whether ccache held nothing before it: a truly cold build; false: ccache answered some or all of it. */
  emptyCcache: boolean;
  jobs: number;
}

/** What tcelab-build.json holds beyond the build itself: the last cold build and the format of the dir. */
export interface BuildRecordExtras {
  /** The compiles of the last cold build (the progress bar's total), kept from build to build. */
  coldObjects?: number;
  coldBuild?: ColdBuild;
  format: number;
}

/** The O= dirs below a build dir whose record says a cold build was made there, oldest first. */
export async function coldBuildsIn(
  buildDir: string,
): Promise<Array<{ out: string; describe?: string; release?: string; cold: ColdBuild }>> {
  const names = await readdir(buildDir).catch(() => [] as string[]);
  const found = [];
  for (const name of names) {
    const out = join(buildDir, name);
    const r = JSON.parse(await readFile(join(out, BUILD_RECORD), 'utf8').catch(() => '{}')) as Partial<BuildRecordExtras> & {
      source?: { describe?: string };
      release?: string;
    };
    if (r.coldBuild) found.push({ out, describe: r.source?.describe, release: r.release, cold: r.coldBuild });
  }
  return found.sort((a, b) => a.cold.at.localeCompare(b.cold.at));
}

/** Whether a ccache dir holds no cached result: ccache 4 stores them two levels down (<0-f>/<0-f>/<hash>R|M). */
export async function ccacheIsEmpty(dir: string): Promise<boolean> {
  const hex = (names: string[]) => names.filter((n) => /^[0-9a-f]$/.test(n));
  for (const one of hex(await readdir(dir).catch(() => [] as string[]))) {
    for (const two of hex(await readdir(join(dir, one)).catch(() => [] as string[]))) {
      if ((await readdir(join(dir, one, two)).catch(() => [] as string[])).length) return false;
    }
  }
  return true;
}
