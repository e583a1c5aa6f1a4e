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

/** A tree to build: the tree itself (no ref) or its export at the ref's commit in the cache. */
export async function gitTreeSource(spec: TreeSpec, input: KernelInput, cache: string, progress: Progress): Promise<GitTreeSource> {
  const content = await gitTreeContent(spec, input);
  const name = `${content.top}${spec.ref ? `@${spec.ref}` : ''}`;
  if (!spec.ref) return { dir: content.top, describe: name, key: content.key, commit: content.commit, dirty: content.dirty };
  const base = join(sourceCacheDir(cache), `tree-${createHash('sha256').update(content.top).digest('hex').slice(0, 12)}`);
  const tree: GitTreeSource = {
    dir: join(base, 'src'),
    describe: `${name} (${content.commit.slice(0, 12)})`,
    key: content.key,
    commit: content.commit,
    dirty: false,
  };
  const at = join(base, 'commit');
  if ((await readFile(at, 'utf8').catch(() => '')).trim() === content.commit) return tree;
  await mkdir(tree.dir, { recursive: true });
  await withLock(`${base}.lock`, `export ${tree.describe}`, progress, async () => {
    if ((await readFile(at, 'utf8').catch(() => '')).trim() === content.commit) return;
    await writeFile(at, '');
    // Its own index: git moves the export from the commit it holds to this one, rewriting only the files that differ.
    await progress.step(`check out ${tree.describe} into the cache`, () =>
      git(content.top, [`--work-tree=${tree.dir}`, 'read-tree', '-u', '--reset', content.commit], `export ${tree.describe}`, {
        GIT_INDEX_FILE: join(base, 'index'),
      }),
    );
    await writeFile(at, `${content.commit}\n`);
  });
  return tree;
}
