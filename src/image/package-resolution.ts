import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { hostDebianMirror } from '../debian/apt-sources.js';
import { debFileName, type DebPackage } from '../debian/deb-package.js';
import { firstNotServed, MIRROR_HINT } from '../debian/guest-suite.js';
import { aptFailureText, PrivateApt, sha256File } from '../debian/private-apt.js';
import { type DebianKernel, resolveDebianKernel } from '../kernel/debian-kernel.js';
import type { KernelFacts } from '../kernel/kernel-facts.js';
import { formatKernelSpec, type KernelInput, type KernelSpec } from '../kernel/kernel-spec.js';
import { kernelSuiteApt, updatedSuiteApt } from '../kernel/kernel-suite-apt.js';
import { TcelabError } from '../util/errors.js';
import type { Progress } from '../util/progress.js';
import type { ImageManifest } from './image-cache.js';
import { USERLAND_ARCH, USERLAND_SUITE, type VariantSpec } from './image-variant.js';

type ManifestPackage = ImageManifest['packages'][number];

/** Debian packages of the image: the userland's, and the kernel's when it comes from Debian. */
export interface ResolvedPackages {
  userland: DebPackage[];
  kernel: DebPackage[];
  index?: ImageManifest['index'];
  kernelSource?: KernelFacts['source'];
  fromSuite?: ImageManifest['fromSuite'];
  substituted?: ImageManifest['substituted'];
}

/** Freshly resolved packages, each with the apt that resolved it (it downloads from there). */
type FreshPackages = ResolvedPackages & { apts: Map<DebPackage, PrivateApt> };

/**
 * Resolves the userland (trixie) and, for a Debian kernel, the kernel's packages in its suite, each through a
 * private apt of its own suite. Every package keeps the apt that resolved it (it downloads from there). The kernel
 * comes first: a spec that cannot resolve (`kernelInput` names where it came from) is refused before the userland
 * is resolved.
 */
export async function resolveAll(
  cache: string,
  spec: VariantSpec,
  kernel: KernelSpec,
  progress: Progress,
  kernelInput: KernelInput = { field: '--kernel', text: formatKernelSpec(kernel) },
): Promise<FreshPackages> {
  const aptFor = (suite: string) => updatedSuiteApt(cache, suite, progress);
  const kernelApt = kernel.kind === 'debian' ? await kernelSuiteApt(cache, kernel.suite, kernelInput, progress, aptFor) : undefined;
  const found = kernel.kind === 'debian' ? await resolveKernelPackages(kernelApt!, kernel, kernelInput, progress) : undefined;
  const userlandApt = kernelApt?.suite === USERLAND_SUITE ? kernelApt : await aptFor(USERLAND_SUITE);
  const index = { dist: userlandApt.dist, date: await userlandApt.releaseField(userlandApt.dist, 'Date') };
  const apts = new Map<DebPackage, PrivateApt>();
  const userland: DebPackage[] = [];
  let fromSuite: ImageManifest['fromSuite'];
  if (spec.fromSuite) {
    const from = spec.fromSuite;
    const otherApt = await aptFor(from.suite);
    const taken = await progress.step(`resolve ${from.packages.join(', ')} in Debian ${from.suite}`, () =>
      resolvePackages(otherApt, { ...spec, packages: from.packages }),
    );
    for (const p of taken) apts.set(p, otherApt);
    userland.push(...taken);
    fromSuite = { suite: from.suite, packages: taken.map((p) => p.name) };
  }
  const have = new Set(userland.map((p) => p.name));
  const trixie = await progress.step('resolve package versions', () => resolvePackages(userlandApt, spec, have));
  for (const p of trixie) apts.set(p, userlandApt);
  userland.push(...trixie);
  if (!found || !kernelApt) return { userland, kernel: [], index, apts, fromSuite };
  for (const p of found.packages) apts.set(p, kernelApt);
  return {
    userland,
    kernel: found.packages,
    index,
    apts,
    fromSuite,
    kernelSource: { spec: formatKernelSpec(kernel), package: found.image.name, version: found.image.version, layout: found.layout },
  };
}

/**
 * The newest kernel the mirror serves: its index can be ahead of its pool (seen: trixie listed 6.12.117 and
 * 6.12.107, the pool had only 6.12.107). An older kernel is said, and recorded as what ran.
 */
async function resolveKernelPackages(
  apt: PrivateApt,
  kernel: Extract<KernelSpec, { kind: 'debian' }>,
  input: KernelInput,
  progress: Progress,
): Promise<DebianKernel> {
  const found = await progress.step(`resolve the ${kernel.flavour} kernel in Debian ${kernel.suite}`, async () => {
    let index = await apt.candidates(/^linux-(image|binary|modules|base)-\d/);
    const notServed: DebPackage[] = [];
    for (;;) {
      let k: DebianKernel;
      try {
        k = resolveDebianKernel(index, { ...kernel }, input);
      } catch (err) {
        // Every kernel that matched is listed but not served: the mirror's pool is at fault, not the spec.
        if (notServed.length === 0) throw err;
        throw new TcelabError(
          `resolve the ${kernel.flavour} kernel in Debian ${kernel.suite}`,
          `the mirror lists ${notServed.map((p) => `${p.name} ${p.version}`).join(', ')} but serves none of them`,
          MIRROR_HINT,
        );
      }
      const missing = await firstNotServed(apt.mirror, k.packages);
      if (!missing) return k;
      progress.info(`the mirror lists ${missing.name} ${missing.version} but does not serve it; trying the next older kernel`);
      notServed.push(missing);
      index = index.filter((p) => p.version !== k.image.version);
    }
  });
  progress.info(
    `kernel: ${found.image.name} ${found.image.version} (${found.layout} layout: ${found.packages.map((p) => p.name).join(', ')})`,
  );
  return found;
}

/** Packages by exact name and their shared-library dependency closure, in one suite. */
export function libraryClosure(apt: PrivateApt, names: string[]): Promise<DebPackage[]> {
  return resolvePackages(apt, { packages: names, binaries: [], dataDirs: [] });
}

/** The variant's userland packages and their shared-library dependency closure. */
async function resolvePackages(apt: PrivateApt, spec: VariantSpec, have: Set<string> = new Set()): Promise<DebPackage[]> {
  const out = new Map<string, DebPackage>();
  // Packages another suite already gives are neither taken again nor followed.
  const already = (name: string) => out.has(name) || have.has(name);
  const queue = [...spec.packages];
  // Follow only library packages: the image carries binaries, not whole systems.
  const follow = (name: string) => /^(lib|zlib1g$)/.test(name) && !/-(base|common|data|bin|dev|doc)$/.test(name) && name !== 'libc-bin';
  while (queue.length) {
    const name = queue.shift()!;
    if (already(name)) continue;
    const pkg = await apt.show(name);
    out.set(name, pkg);
    for (const group of pkg.depends) {
      if (group.some(already)) continue;
      const pick = group.find(follow);
      if (pick) queue.push(pick);
    }
  }
  return [...out.values()];
}

/**
 * Downloads and verifies every freshly resolved package into debDir. A userland package the mirror lists but does
 * not serve is replaced, in fresh, by its substitute (recorded in fresh.substituted). Returns the bytes downloaded.
 */
export async function downloadPackages(fresh: FreshPackages, cache: string, debDir: string, progress: Progress): Promise<number> {
  let downloadedBytes = 0;
  const toFetch = [...fresh.userland, ...fresh.kernel];
  await progress.step(`download and verify ${toFetch.length} packages`, async (update) => {
    let i = 0;
    for (const p of toFetch) {
      update(`${i + 1}/${toFetch.length} ${p.name} ${p.version}`, i / toFetch.length);
      i++;
      const had = existsSync(join(debDir, debFileName(p)));
      const got = await downloadOrSubstitute(p, fresh, cache, debDir, progress);
      if (got !== p) {
        fresh.userland[fresh.userland.indexOf(p)] = got;
        fresh.substituted = [...(fresh.substituted ?? []), { name: p.name, wanted: p.version, took: got.version, suite: FALLBACK_SUITE }];
      }
      if (!had) downloadedBytes += got.size;
    }
  });
  return downloadedBytes;
}

/**
 * Where a userland package comes from when the mirror lists a version it does not serve (seen: trixie's index
 * listed libc6 2.41-12+deb13u5 and zlib1g …+deb13u1 while the mirror's pool answered 404 for both): the same
 * package from unstable, whose libraries are newer and serve binaries built against the older ones. The kernel
 * under test is never substituted.
 */
const FALLBACK_SUITE = 'sid';

/** The mirror answered that it does not have the file the index names. */
const notOnMirror = (err: unknown) => /\b404\b|Not Found/.test(aptFailureText(err));

async function downloadOrSubstitute(
  p: DebPackage,
  fresh: { apts: Map<DebPackage, PrivateApt>; userland: DebPackage[] },
  cache: string,
  debDir: string,
  progress: Progress,
): Promise<DebPackage> {
  try {
    await fresh.apts.get(p)!.download(p, debDir);
    return p;
  } catch (err) {
    if (!notOnMirror(err) || !fresh.userland.includes(p)) throw err;
    const apt = new PrivateApt(join(cache, 'guest', `apt-${FALLBACK_SUITE}`), hostDebianMirror(), FALLBACK_SUITE, USERLAND_ARCH);
    if (!fallbackUpdated.has(apt.root)) {
      await apt.update();
      fallbackUpdated.add(apt.root);
    }
    const other = await apt.show(p.name).catch(() => undefined);
    if (!other) throw err;
    await apt.download(other, debDir).catch(() => {
      throw err;
    });
    progress.info(
      `the mirror lists ${p.name} ${p.version} but does not serve it; ` +
        `took ${p.name} ${other.version} from Debian ${FALLBACK_SUITE} (verified against its index)`,
    );
    return other;
  }
}
const fallbackUpdated = new Set<string>();

/** The package set a manifest records, when every .deb of it is still cached intact: a repack then needs no download. */
export async function cachedPackages(manifest: ImageManifest, debDir: string, progress: Progress): Promise<ResolvedPackages | undefined> {
  const asDeb = (p: ManifestPackage): DebPackage => ({ ...p, depends: [] });
  const kernelNames = new Set(manifest.kernel.source.package ? kernelPackageNames(manifest) : []);
  const all = manifest.packages.map(asDeb);
  const intact = await progress.step('verify cached packages', async () => {
    for (const p of all) {
      const f = join(debDir, debFileName(p));
      if (!existsSync(f) || (await sha256File(f)) !== p.sha256) return false;
    }
    return true;
  });
  if (!intact) return undefined;
  return {
    userland: all.filter((p) => !kernelNames.has(p.name)),
    kernel: all.filter((p) => kernelNames.has(p.name)),
    index: manifest.index,
    kernelSource: manifest.kernel.source,
    fromSuite: manifest.fromSuite,
    substituted: manifest.substituted,
  };
}

/** The kernel's packages in a manifest: those of its image package's source set (linux-{image,binary,modules,base}-<abi>-…). */
function kernelPackageNames(m: ImageManifest): string[] {
  return m.packages.filter((p) => /^linux-(image|binary|modules|base)-\d/.test(p.name)).map((p) => p.name);
}
