import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { packageRoot } from '../util/paths.js';

/** The repository's fixes for the kernel defects tcelab found: kernel-patches/<base>/<file>, listed in its README. */
export const KERNEL_PATCHES_DIR = join(packageRoot, 'kernel-patches');

/** One fix: the base tree it applies to (Debian's source version), its file, and the defect it fixes. */
export interface DefectPatch {
  base: string;
  file: string;
  path: string;
  defect: number;
}

/**
 * Every patch the README's per-base tables list with its defect (rows "| `<file>` | <defect> | …" under "## <base>"):
 * the README is where a maintainer reads what each patch is for, so it is the one place that says it.
 */
export function defectPatches(readme = join(KERNEL_PATCHES_DIR, 'README.md')): DefectPatch[] {
  if (!existsSync(readme)) return [];
  const out: DefectPatch[] = [];
  for (const section of readFileSync(readme, 'utf8').split(/^## /m).slice(1)) {
    const base = /^(\d+\.\d+(?:\.\d+)?(?:~rc\d+)?)\s/.exec(section)?.[1];
    if (!base) continue;
    for (const m of section.matchAll(/^\| `([^`]+\.patch)` \| (\d+) \|/gm)) {
      const path = join(KERNEL_PATCHES_DIR, base, m[1]!);
      if (existsSync(path)) out.push({ base, file: m[1]!, path, defect: Number(m[2]) });
    }
  }
  return out;
}

/** The patches that fix a defect, every base's (with, on each base, the patches before them that they need applied first). */
export function patchesForDefect(defect: number, all = defectPatches()): DefectPatch[] {
  return all.filter((p) => p.defect === defect);
}
