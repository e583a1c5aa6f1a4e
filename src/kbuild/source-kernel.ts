import { createHash } from 'node:crypto';
import type { KernelInput, SourceKernelSpec } from '../kernel/kernel-spec.js';
import type { Progress } from '../util/progress.js';
import { debianSource } from './debian-source.js';
import { gitTreeContent, gitTreeSource } from './git-tree.js';
import { allconfigText, askedOptions } from './lab-config.js';
import { BUILD_FORMAT, type BuiltKernel, buildLabKernel, type KernelBuildOptions } from './lab-kernel.js';
import { crossCompilerVersion } from './module-build-tree.js';

/**
 * A kernel spec tcelab builds from source (tree:, debian-source:), built: its tree found (a git tree at a ref or as
 * it stands; Debian's linux-source resolved and unpacked), configured with the lab's fragment and the user's
 * additions, compiled out of tree. What comes out is staged like a `local:` build.
 */
export async function buildSourceKernel(
  spec: SourceKernelSpec,
  input: KernelInput,
  cache: string,
  progress: Progress,
  opts: KernelBuildOptions = {},
): Promise<BuiltKernel> {
  const asked = await askedOptions(spec.flavour, spec.kconfig);
  // One O= dir per tree, page size and the user's additions (a KASAN build beside the plain one, neither
  // reconfiguring the other's dir); a change of the lab fragment itself rebuilds in place.
  const user = asked.filter((o) => o.by === 'user');
  const pages = `${spec.flavour === 'powerpc64le-64k' ? '64k' : '4k'}${user.length ? `-k${shortHash(allconfigText(user))}` : ''}`;
  if (spec.kind === 'tree') {
    const source = await gitTreeSource(spec, input, cache, progress);
    // One O= dir per tree path (the tree as it stands, or its export at refs) and page size: rebuilds are incremental.
    const outName = `tree-${shortHash(source.dir)}-${pages}`;
    return buildLabKernel({ source, outName, flavour: spec.flavour, asked }, cache, progress, opts);
  }
  const source = await debianSource(spec, input, cache, progress);
  const outName = `${source.describe.replace(/[^A-Za-z0-9.+_-]+/g, '_')}-${pages}`;
  return buildLabKernel({ source, outName, flavour: spec.flavour, asked }, cache, progress, opts);
}

const shortHash = (s: string) => createHash('sha256').update(s).digest('hex').slice(0, 12);

/**
 * What a source kernel's image depends on, known without building or asking a mirror: a tree's content (its commit,
 * or its HEAD and local changes), the configuration asked for (the lab fragment, the page size, the additions with
 * their files' text) and the compiler. A suite's newest source is re-resolved only when the image is rebuilt (as a
 * debian: kernel's packages are), or with --refresh.
 */
export async function sourceKernelInputs(spec: SourceKernelSpec, input: KernelInput): Promise<string> {
  const content = spec.kind === 'tree' ? (await gitTreeContent(spec, input)).key : JSON.stringify(spec.target);
  const asked = allconfigText(await askedOptions(spec.flavour, spec.kconfig));
  return `${content}\nbuild format ${BUILD_FORMAT}\n${await crossCompilerVersion()}\n${asked}`;
}
