import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { hostDebianMirror } from '../debian/apt-sources.js';
import { type DebPackage, debFileName } from '../debian/deb-package.js';
import { PrivateApt } from '../debian/private-apt.js';
import { suiteAptRoot, USERLAND_ARCH } from '../debian/guest-suite.js';
import type { KernelBuildFacts, KernelFacts } from '../kernel/kernel-facts.js';
import { isSourceKernel, parseKernelSpec } from '../kernel/kernel-spec.js';
import { TcelabError } from '../util/errors.js';
import { cacheDir, guestSourceDir } from '../util/paths.js';
import type { Progress } from '../util/progress.js';
import { debianSourceTree, readDebMember } from './kernel-source.js';
import { crossCompilerVersion, type ModuleBuildTree, prepareModuleTree } from './module-build-tree.js';
import { type BuiltModule, buildOutOfTreeModule, builtOutOfTreeModule, modinfoField } from './out-of-tree-module.js';
import { withSourceKernelBuild } from './source-kernel.js';

/** The guest modules tcelab builds, by module name: their source dir under guest/ (a Kbuild and C files). */
export const GUEST_MODULE_SOURCES: Record<string, string> = {
  // The hostile-guest instrument: raw TCE hypercalls and DDW RTAS calls (scenarios/hostile-guest.json).
  tcelab_hcall: 'hcall',
};

/** A guest module's source dir, or an error naming the modules there are. */
export function guestModuleSource(name: string): string {
  const dir = GUEST_MODULE_SOURCES[name];
  if (!dir)
    throw new TcelabError(
      `build the guest module ${name}`,
      'no such guest module',
      `known: ${Object.keys(GUEST_MODULE_SOURCES).join(', ')}`,
    );
  return join(guestSourceDir, dir);
}

/** A guest module built for the image's kernel, or why it cannot be (a step that needs it is then not applicable). */
export type GuestModule = { module: BuiltModule } | { notApplicable: string };

/** What a module build needs of an image: its kernel's facts and its packages (an image manifest is one). */
export interface ImageKernel {
  kernel: KernelFacts;
  packages: Array<Pick<DebPackage, 'name' | 'version' | 'architecture' | 'filename' | 'sha256' | 'size'>>;
}

/**
 * Builds guest/<name> (a kernel module the agent loads on demand) for the kernel of a guest image. A kernel tcelab
 * built from source gets it from that build's own O= dir (the tree is prepared already). A Debian kernel's module is
 * built from Debian's `linux-source-<major.minor>` of exactly the kernel's version, with the kernel's own config and
 * the Module.symvers of its `linux-headers-…` package, all resolved in the kernel's suite (never a fixed version). A
 * kernel whose source is not served, or that names no source, gets the reason instead.
 */
export async function ensureGuestModule(name: string, manifest: ImageKernel, progress: Progress, cache = cacheDir()): Promise<GuestModule> {
  const facts = manifest.kernel;
  if (facts.source.build) return moduleForBuiltKernel(name, facts, facts.source.build, cache, progress);
  const spec = parseKernelSpec(facts.source.spec, 'the image manifest');
  if (spec.kind !== 'debian' || !facts.source.package || !facts.source.version) {
    return {
      notApplicable: `the ${facts.source.spec} kernel names no source tree to build the ${name} module from (Debian kernels and kernels built from source do)`,
    };
  }
  const imagePkg = facts.source.package;
  const m = /^linux-image-(\d+\.\d+[^-]*)-(powerpc64le(?:-64k)?)$/.exec(imagePkg);
  const series = /^(\d+\.\d+)/.exec(facts.release)?.[1];
  if (!m || !series) throw new TcelabError(`build the ${name} module`, `cannot read the ABI of ${imagePkg} (${facts.release})`);
  const [, abi, flavour] = m;
  const version = facts.source.version;
  // Built before for this kernel (its packages' hashes) and these sources: nothing to resolve, read or build.
  const memo = join(cache, 'kernel-build', 'modules', `${name}-for-${await memoKey(name, manifest)}.json`);
  if (existsSync(memo)) {
    const built = JSON.parse(await readFile(memo, 'utf8')) as BuiltModule;
    if (existsSync(built.ko)) return { module: { ...built, buildMs: 0, preparedMs: 0 } };
  }
  const apt = new PrivateApt(suiteAptRoot(cache, spec.suite), hostDebianMirror(), spec.suite, USERLAND_ARCH);
  const exact = (pkg: string) => find(apt, pkg, version, progress);
  const sourcePkg = await exact(`linux-source-${series}`);
  const headersPkg = await exact(`linux-headers-${abi}-${flavour}`);
  const missing = [sourcePkg, headersPkg].filter((p): p is string => typeof p === 'string');
  if (missing.length)
    return {
      notApplicable: `the Debian mirror serves no ${missing.join(' and no ')} ${version} (${spec.suite}), which the ${name} module is built from`,
    };
  const { configText, vermagic } = await kernelBuildFacts(manifest, apt, cache, progress);
  const debs = join(cache, 'kernel-source', 'debs');
  const headersDeb = await progress.step(`download ${(headersPkg as DebPackage).name} ${version}`, () =>
    apt.download(headersPkg as DebPackage, debs),
  );
  const symvers = await readDebMember(headersDeb, /\/Module\.symvers$/);
  if (!symvers) throw new TcelabError(`build the ${name} module`, `${(headersPkg as DebPackage).name} ${version} has no Module.symvers`);
  const source = await debianSourceTree(apt, sourcePkg as DebPackage, cache, progress);
  const tree = await prepareModuleTree({ source, configText, release: facts.release, vermagic, symvers: symvers.data }, cache, progress);
  const module = await buildOutOfTreeModule(tree, guestModuleSource(name), name, cache, progress);
  await writeFile(memo, `${JSON.stringify(module, null, 2)}\n`);
  return { module };
}

/**
 * The module for a kernel built from source, built in the build's O= dir. That dir holds the newest build of its
 * tree (a history's export moves from commit to commit): when it holds another, this image's kernel is built there
 * again (incremental; kept builds are not rebuilt, only the tree is put back) before the module is built against it.
 */
async function moduleForBuiltKernel(
  name: string,
  facts: KernelFacts,
  build: KernelBuildFacts,
  cache: string,
  progress: Progress,
): Promise<GuestModule> {
  const source = guestModuleSource(name);
  const at = { out: build.out, kcflags: '', key: build.key, release: facts.release };
  const before = await builtOutOfTreeModule(at, source, name, cache);
  if (before) return { module: before };
  const spec = parseKernelSpec(facts.source.spec, 'the image manifest');
  if (!isSourceKernel(spec)) throw new TcelabError(`build the ${name} module`, `${facts.source.spec} is not a kernel built from source`);
  const input = { field: 'the image manifest', text: facts.source.spec };
  return withSourceKernelBuild(spec, input, cache, progress, async (built): Promise<GuestModule> => {
    if (built.key !== build.key || built.out !== build.out)
      return {
        notApplicable:
          `${facts.source.spec} now builds another kernel than this image's (${built.source.describe}): ` +
          'build the image again (tcelab guest build --refresh) to test it',
      };
    const tree: ModuleBuildTree = {
      source: { dir: built.source.dir, describe: build.tree, key: build.key },
      out: build.out,
      release: facts.release,
      vermagic: (await vermagicOfBuild(facts.release, build.out)) ?? '',
      forced: [],
      kcflags: '',
      preparedMs: 0,
      key: build.key,
    };
    return { module: await buildOutOfTreeModule(tree, source, name, cache, progress) };
  });
}

/** The vermagic of the build's own modules (vfio.ko's): a module built in its tree must carry the same. */
async function vermagicOfBuild(release: string, out: string): Promise<string | undefined> {
  const ko = join(out, 'tcelab-modules', 'lib', 'modules', release, 'kernel', 'drivers', 'vfio', 'vfio.ko');
  return existsSync(ko) ? modinfoField(await readFile(ko), 'vermagic') : undefined;
}

/** The kernel's packages (their hashes) and the module's sources, with the compiler: what a built module depends on. */
async function memoKey(name: string, manifest: ImageKernel): Promise<string> {
  const hash = createHash('sha256').update(await crossCompilerVersion());
  for (const p of manifest.packages.filter((x) => /^linux-(image|modules|base|binary)-\d/.test(x.name))) hash.update(p.sha256);
  const dir = guestModuleSource(name);
  for (const f of (await readdir(dir)).sort()) hash.update(f).update(await readFile(join(dir, f)));
  return hash.digest('hex').slice(0, 16);
}

/** The package at exactly this version in the suite's index (the lists refreshed once if it is not there), or its name when the mirror has none. */
async function find(apt: PrivateApt, name: string, version: string, progress: Progress): Promise<DebPackage | string> {
  const look = async () => (await apt.candidates(new RegExp(`^${name.replace(/[.+]/g, '\\$&')}$`))).find((p) => p.version === version);
  const found = await look().catch(() => undefined);
  if (found) return found;
  await progress.step(`update Debian ${apt.suite} ${USERLAND_ARCH} package lists (to find ${name} ${version})`, () => apt.update());
  return (await look()) ?? name;
}

/** The kernel's config and vermagic, read from its own packages (cached by the image build, else downloaded again). */
async function kernelBuildFacts(
  manifest: ImageKernel,
  apt: PrivateApt,
  cache: string,
  progress: Progress,
): Promise<{ configText: string; vermagic: string }> {
  const release = manifest.kernel.release;
  const kernelDebs = manifest.packages.filter((p) => /^linux-(image|modules|base)-\d/.test(p.name));
  const debsDir = join(cache, 'guest', 'debs');
  let configText: string | undefined;
  let vermagic: string | undefined;
  for (const p of kernelDebs) {
    const pkg: DebPackage = { ...p, depends: [] };
    const deb = existsSync(join(debsDir, debFileName(pkg))) ? join(debsDir, debFileName(pkg)) : await apt.download(pkg, debsDir);
    configText ??= (await readDebMember(deb, /^\.\/(boot\/config-|usr\/lib\/modules\/[^/]+\/config$)/))?.data.toString('utf8');
    if (!vermagic) {
      const ko = await readDebMember(deb, /\/kernel\/drivers\/vfio\/vfio\.ko(\.xz)?$/);
      if (ko) vermagic = modinfoField(ko.data, 'vermagic');
    }
  }
  progress.info(`kernel ${release}: vermagic "${vermagic}"`);
  if (!configText || !vermagic)
    throw new TcelabError(
      `read the config and vermagic of ${release}`,
      `not found in ${kernelDebs.map((p) => p.name).join(', ') || 'the manifest (no kernel packages)'}`,
    );
  return { configText, vermagic };
}
