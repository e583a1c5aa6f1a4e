import { existsSync } from 'node:fs';
import { appendFile, mkdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { run } from '../util/exec.js';

/** The file the incremental build edits: the sPAPR TCE IOMMU driver of VFIO (a module in the lab configuration). */
export const EDITED_FILE = 'drivers/vfio/vfio_iommu_spapr_tce.c';

const git = (dir: string, args: string[], what: string) => run('git', ['-C', dir, ...args], { what, hint: 'is git installed?' });

/**
 * The bench's own clone of a kernel repository at a commit, kept in the cache at one path from run to run, so that
 * its O= dir (one per tree path) makes every bench after the first incremental. `git clone --shared`: the objects stay
 * the repository's, only the work tree is written. When the commit changes (a newer source), the clone moves to it.
 */
export async function benchKernelTree(repo: string, commit: string, cache: string): Promise<string> {
  const dir = join(cache, 'bench', 'kernel-tree');
  if (!existsSync(join(dir, '.git'))) {
    await mkdir(dirname(dir), { recursive: true });
    await run('git', ['clone', '--shared', '--quiet', repo, dir], { what: `clone ${repo} into ${dir}` });
  }
  const head = (await git(dir, ['rev-parse', 'HEAD'], `read the HEAD of ${dir}`)).stdout.trim();
  if (head !== commit) {
    await git(dir, ['fetch', '--quiet', repo, commit], `fetch ${commit} from ${repo}`);
    await git(dir, ['reset', '--hard', '--quiet', commit], `move ${dir} to ${commit}`);
  }
  return dir;
}

/**
 * Edits the tree as a developer would between two builds: the file as committed, plus one comment line that differs
 * from run to run (so that make and ccache both see new content and really recompile it).
 */
export async function editSource(dir: string, stamp: string): Promise<void> {
  await git(dir, ['checkout', '--quiet', 'HEAD', '--', EDITED_FILE], `restore ${EDITED_FILE} in ${dir}`);
  await appendFile(join(dir, EDITED_FILE), `/* tcelab bench: edited ${stamp} */\n`);
}
