import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { KernelInput, SourceKernelSpec } from '../kernel/kernel-spec.js';
import { InputError } from '../util/errors.js';
import { run } from '../util/exec.js';
import { withLock } from '../util/lock.js';
import type { Progress } from '../util/progress.js';
import { type KernelSourceTree, sourceCacheDir } from './kernel-source.js';
import { markUsed } from '../util/mark-used.js';

type TreeSpec = Extract<SourceKernelSpec, { kind: 'tree' }>;

/**
 * A git tree of kernel source as tcelab builds it. With a ref, the tree at that commit, exported into the cache
 * (one export per tree path, moved from commit to commit by git itself, so that only the files that differ are
 * rewritten and an incremental build rebuilds only what they touch); without one, the tree as it stands, local
 * changes included, built where it is (out of tree: O= in the cache).
 */
export interface GitTreeSource extends KernelSourceTree {
  /** The commit (with a ref, or the HEAD under local changes). */
  commit: string;
  /** Whether it is the tree as it stands with local changes (tracked or untracked) on top of its HEAD. */
  dirty: boolean;
}

const git = (tree: string, args: string[], what: string, env?: NodeJS.ProcessEnv) =>
  run('git', ['-C', tree, ...args], { what, env: env ? { ...process.env, ...env } : undefined, hint: 'is git installed?' });

/** The tree's top, or bad input: a path that is not a git tree (of a kernel). */
export async function gitTop(path: string, input: KernelInput): Promise<string> {
  const top = await git(path, ['rev-parse', '--show-toplevel'], `ask git about ${path}`).catch(() => undefined);
  if (!top) {
    throw new InputError(
      input.field,
      input.text,
      `${path} is not a git tree`,
      'tree:<path> names a git clone of a kernel (make it one with `git init && git add -A && git commit`), or use ' +
        'debian-source:<suite|version> for Debian’s source',
    );
  }
  const dir = top.stdout.trim();
  if (!existsSync(join(dir, 'Kconfig')) || !existsSync(join(dir, 'arch', 'powerpc'))) {
    throw new InputError(input.field, input.text, `${dir} is a git tree but not a kernel source tree (no Kconfig, no arch/powerpc)`);
  }
  return dir;
}

/** The commit a ref names, or bad input that lists a few of the tree's branches and tags. */
export async function commitOf(top: string, ref: string, input: KernelInput): Promise<string> {
  const found = await git(top, ['rev-parse', '--verify', '--quiet', `${ref}^{commit}`], `resolve ${ref} in ${top}`).catch(() => undefined);
  if (found) return found.stdout.trim();
  const refs = await git(
    top,
    ['for-each-ref', '--sort=-committerdate', '--count=8', '--format=%(refname:short)', 'refs/heads', 'refs/tags'],
    'list refs',
  )
    .then((r) => r.stdout.split('\n').filter(Boolean))
    .catch(() => [] as string[]);
  throw new InputError(
    input.field,
    input.text,
    `${top} has no commit "${ref}"`,
    refs.length ? `some of its refs, newest first: ${refs.join(', ')}; any commit id works too` : 'name a branch, a tag or a commit id',
  );
}

/**
 * What identifies a tree's content, cheaply (no file is read but the changed ones): the commit, or for the tree as
 * it stands its HEAD and a hash of `git diff HEAD` and of every untracked file that is not ignored.
 */
export async function gitTreeContent(
  spec: TreeSpec,
  input: KernelInput,
): Promise<{ top: string; commit: string; key: string; dirty: boolean }> {
  const top = await gitTop(spec.path, input);
  if (spec.ref) {
    const commit = await commitOf(top, spec.ref, input);
    return { top, commit, key: commit, dirty: false };
  }
  const head = await commitOf(top, 'HEAD', input);
  const diff = await run('git', ['-C', top, 'diff', 'HEAD', '--binary'], { what: `git diff HEAD in ${top}` });
  const untracked = (await git(top, ['ls-files', '--others', '--exclude-standard', '-z'], `list untracked files in ${top}`)).stdout
    .split('\0')
    .filter(Boolean)
    .sort();
  if (!diff.stdout && untracked.length === 0) return { top, commit: head, key: head, dirty: false };
  const h = createHash('sha256').update(diff.stdout);
  for (const f of untracked) h.update(`\0${f}\0`).update(await readFile(join(top, f)).catch(() => Buffer.alloc(0)));
  return { top, commit: head, key: `${head}+${h.digest('hex').slice(0, 16)}`, dirty: true };
}

/**
 * A commit of a git repository exported into the cache, and `use` run on it while it stays there (the export's lock
 * is held: another process moving the export to its own commit waits). One export per line of history — keyed by
 * the history's root commit, not by the repository — so that every repository descending from the same root (a
 * clone with commits on top, Debian's source with a patch series, a bisection's history) moves one export from
 * commit to commit: git rewrites only the files that differ, and the build in it is incremental.
 */
export async function withExportedCommit<T>(
  repo: string,
  commit: string,
  describe: string,
  cache: string,
  progress: Progress,
  use: (tree: GitTreeSource) => Promise<T>,
): Promise<T> {
  const roots = (await git(repo, ['rev-list', '--max-parents=0', commit], `find the root commit of ${commit}`)).stdout
    .split('\n')
    .filter(Boolean)
    .sort();
  const base = join(sourceCacheDir(cache), `tree-${roots[0]!.slice(0, 12)}`);
  const tree: GitTreeSource = { dir: join(base, 'src'), describe, key: commit, commit, dirty: false };
  const at = join(base, 'commit');
  await mkdir(tree.dir, { recursive: true });
  await markUsed(base);
  // Held while the export is built from: a cold build takes many minutes.
  return withLock(
    `${base}.lock`,
    `build ${describe}`,
    progress,
    async () => {
      if ((await readFile(at, 'utf8').catch(() => '')).trim() !== commit) {
        await writeFile(at, '');
        // Its own index: git moves the export from the commit it holds to this one, rewriting only the files that differ.
        await progress.step(`check out ${describe} into the cache`, () =>
          git(repo, [`--work-tree=${tree.dir}`, 'read-tree', '-u', '--reset', commit], `export ${describe}`, {
            GIT_INDEX_FILE: join(base, 'index'),
          }),
        );
        await writeFile(at, `${commit}\n`);
      }
      return use(tree);
    },
    { waitMs: 60 * 60_000 },
  );
}
