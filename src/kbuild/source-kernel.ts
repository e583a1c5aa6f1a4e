import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import type { KernelInput, SourceKernelSpec } from '../kernel/kernel-spec.js';
import { packageRoot } from '../util/paths.js';
import type { Progress } from '../util/progress.js';
import { debianSource } from './debian-source.js';
import { gitTreeContent, withExportedCommit } from './git-tree.js';
import type { KernelSourceTree } from './kernel-source.js';
import { type AskedOption, allconfigText, askedOptions } from './lab-config.js';
import {
  BUILD_FORMAT,
  type BuiltKernel,
  KEPT_FORMAT,
  inLabKernelBuild,
  type KernelBuildOptions,
  keepLabKernel,
  savedLabKernel,
} from './lab-kernel.js';
import { crossCompilerVersion } from './module-build-tree.js';
import { pruneKernelBuilds } from './prune-builds.js';
import { applySeries, debianSourceGit, patchSeries, repositoryPatches, type SourceGit } from './source-git.js';

/** The repository's own kernel patches: kernel-patches/<upstream version>/*.patch. */
export const KERNEL_PATCHES = join(packageRoot, 'kernel-patches');

type DebianSourceSpec = Extract<SourceKernelSpec, { kind: 'debian-source' }>;

/** A Debian source resolved to a commit: its repository, the commit to build and the patches on top of its base. */
export interface DebianSourceCommit {
  git: SourceGit;
  commit: string;
  describe: string;
  patches: { commit: string; subject: string; patch: string }[];
}

/**
 * A debian-source spec as a commit of its source's repository: Debian's source as unpacked, or with the repository's
 * series for its version (+patches) and the user's (patches=) applied on top.
 */
export async function debianSourceCommit(
  spec: DebianSourceSpec,
  input: KernelInput,
  cache: string,
  progress: Progress,
): Promise<DebianSourceCommit> {
  const tree = await debianSource(spec, input, cache, progress);
  const git = await debianSourceGit(tree, progress);
  const dirs = [
    ...(spec.repoPatches ? [await repositoryPatches(KERNEL_PATCHES, tree.upstream, input.field, input.text)] : []),
    ...spec.patches,
  ];
  const files = await patchSeries(dirs, input.field, input.text);
  if (files.length === 0) return { git, commit: git.base, describe: tree.describe, patches: [] };
  const series = await applySeries(git, files, input.field, input.text, progress);
  const from = dirs.map((d) => (d.startsWith(packageRoot) ? relative(packageRoot, d) : d)).join(', ');
  return { git, commit: series.head, describe: `${tree.describe} + ${files.length} patches (${from})`, patches: series.commits };
}

/** Where a source kernel's tree is: a commit of a repository (exported to build), or a tree as it stands. */
type LocatedSource = { repo: string; commit: string; describe: string; key: string } | { asIs: KernelSourceTree; key: string };

async function locate(spec: SourceKernelSpec, input: KernelInput, cache: string, progress: Progress): Promise<LocatedSource> {
  if (spec.kind === 'tree') {
    const content = await gitTreeContent(spec, input);
    // The tree as it stands is built where it is (out of tree, one O= dir per path).
    // Its build is not the commit's: kbuild marks a release built in a git tree ("6.12.117+"), so its key says where.
    if (!spec.ref) {
      const key = `${content.key} as it stands in ${content.top}`;
      return { asIs: { dir: content.top, describe: content.top, key }, key };
    }
    return {
      repo: content.top,
      commit: content.commit,
      describe: `${content.top}@${spec.ref} (${content.commit.slice(0, 12)})`,
      key: content.commit,
    };
  }
  const source = await debianSourceCommit(spec, input, cache, progress);
  return { repo: source.git.gitDir, commit: source.commit, describe: source.describe, key: source.commit };
}

/** The configuration a spec asks for, and its O= dir's suffix (the page size and the user's additions). */
async function configurationOf(spec: SourceKernelSpec): Promise<{ asked: AskedOption[]; pages: string }> {
  const asked = await askedOptions(spec.flavour, spec.kconfig);
  // One O= dir per tree, page size and the user's additions (a KASAN build beside the plain one, neither
  // reconfiguring the other's dir); a change of the lab fragment itself rebuilds in place.
  const user = asked.filter((o) => o.by === 'user');
  return {
    asked,
    pages: `${spec.flavour === 'powerpc64le-64k' ? '64k' : '4k'}${user.length ? `-k${shortHash(allconfigText(user))}` : ''}`,
  };
}

/** `use` run on the spec's build in its O= dir (the export moved to its commit, the build made to be this one), under their locks. */
async function inSourceBuild<T>(
  located: LocatedSource,
  spec: SourceKernelSpec,
  config: { asked: AskedOption[]; pages: string },
  cache: string,
  progress: Progress,
  use: (built: BuiltKernel) => Promise<T>,
  opts: KernelBuildOptions = {},
): Promise<T> {
  const inTree = (source: KernelSourceTree) =>
    inLabKernelBuild(labBuild(source, spec, config.asked, config.pages), cache, progress, use, opts);
  return 'asIs' in located
    ? inTree(located.asIs)
    : withExportedCommit(located.repo, located.commit, located.describe, cache, progress, inTree);
}

/**
 * A kernel spec tcelab builds from source (tree:, debian-source:), built: its tree found (a git tree at a ref or as
 * it stands; Debian's linux-source resolved, unpacked and committed, a patch series applied), configured with the
 * lab's fragment and the user's additions, compiled out of tree, kept. What comes out is staged like a `local:` build.
 */
export async function buildSourceKernel(
  spec: SourceKernelSpec,
  input: KernelInput,
  cache: string,
  progress: Progress,
  opts: KernelBuildOptions = {},
): Promise<BuiltKernel> {
  const config = await configurationOf(spec);
  const located = await locate(spec, input, cache, progress);
  // Kept from before (a matrix or a bisection back at a commit built already): the export is not moved for it. A
  // measuring build (the bench's) makes it all the same.
  const saved = (opts.make ?? 'if-stale') === 'if-stale' ? await savedLabKernel(cache, located.key, config.asked) : undefined;
  if (saved) return saved;
  const built = await inSourceBuild(located, spec, config, cache, progress, async (b) => keepLabKernel(cache, b), opts);
  // A new build may push the least recently used exports and build dirs over the cache's counts.
  for (const dir of await pruneKernelBuilds(cache)) progress.info(`removed ${dir} (not used lately: the cache keeps the most recent ones)`);
  return built;
}

/**
 * `use` run in the spec's build tree, which holds exactly that build while `use` runs (what is compiled against it — a
 * guest module — matches the kernel); the build is kept too.
 */
export async function withSourceKernelBuild<T>(
  spec: SourceKernelSpec,
  input: KernelInput,
  cache: string,
  progress: Progress,
  use: (built: BuiltKernel) => Promise<T>,
): Promise<T> {
  const config = await configurationOf(spec);
  const located = await locate(spec, input, cache, progress);
  return inSourceBuild(located, spec, config, cache, progress, async (built) => {
    if (!(await savedLabKernel(cache, located.key, config.asked))) await keepLabKernel(cache, built);
    return use(built);
  });
}

/** One O= dir per source dir (a tree where it stands, or a history's export) and page size: rebuilds are incremental. */
const labBuild = (source: KernelSourceTree, spec: SourceKernelSpec, asked: AskedOption[], pages: string) => ({
  source,
  outName: `tree-${shortHash(source.dir)}-${pages}`,
  flavour: spec.flavour,
  asked,
});

const shortHash = (s: string) => createHash('sha256').update(s).digest('hex').slice(0, 12);

/** Every file of a patch directory or a patch, read in order (for a key that changes when any of them does). */
async function patchesContent(paths: string[]): Promise<string> {
  const h = createHash('sha256');
  for (const p of paths) {
    const files = await readdir(p, { recursive: true })
      .then((fs) =>
        fs
          .filter((f) => f.endsWith('.patch'))
          .sort()
          .map((f) => join(p, f)),
      )
      .catch(() => [p]);
    for (const f of files)
      h.update(f)
        .update('\0')
        .update(await readFile(f).catch(() => Buffer.alloc(0)));
  }
  return h.digest('hex');
}

/**
 * What a source kernel's image depends on, known without building or asking a mirror: a tree's content (its commit,
 * or its HEAD and local changes), the patches applied (their bytes), the configuration asked for (the lab fragment,
 * the page size, the additions with their files' text) and the compiler. A suite's newest source is re-resolved only
 * when the image is rebuilt (as a debian: kernel's packages are), or with --refresh.
 */
export async function sourceKernelInputs(spec: SourceKernelSpec, input: KernelInput): Promise<string> {
  const content =
    spec.kind === 'tree'
      ? (await gitTreeContent(spec, input)).key
      : `${JSON.stringify(spec.target)} patches ${await patchesContent([...(spec.repoPatches ? [KERNEL_PATCHES] : []), ...spec.patches])}`;
  const asked = allconfigText(await askedOptions(spec.flavour, spec.kconfig));
  return `${content}\nbuild format ${BUILD_FORMAT}, keys ${KEPT_FORMAT}\n${await crossCompilerVersion()}\n${asked}`;
}
