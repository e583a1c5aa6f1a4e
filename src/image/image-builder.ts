import { mkdir, readFile, writeFile, rm, rename, readdir, stat, readlink, copyFile, lstat } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import { join, posix } from 'node:path';
import { aptFailureText, PrivateApt, sha256File } from '../debian/private-apt.js';
import { debFileName, type DebPackage } from '../debian/deb-package.js';
import { hostDebianMirror } from '../debian/apt-sources.js';
import { writeCpio, type CpioEntry } from './cpio.js';
import { moduleInfo, modulesDep, normalizeModuleName } from './kmod.js';
import { resolveDebianKernel } from '../kernel/debian-kernel.js';
import { GUEST_MODULES, KVM_HOST_MODULES, type KernelFacts } from '../kernel/kernel-facts.js';
import { DEFAULT_KERNEL, formatKernelSpec, kernelKey, parseKernelSpec, type KernelSpec } from '../kernel/kernel-spec.js';
import { GUEST_MODULE_DIRS, stageKernelDebs, stageLocalKernel, type StagedKernel } from '../kernel/stage-kernel.js';
import { readElfDeps, EM_PPC64 } from './elf.js';
import { run, runBinary } from '../util/exec.js';
import { TcelabError } from '../util/errors.js';
import { cacheDir, guestSourceDir } from '../util/paths.js';
import { filesUnder } from '../util/fs.js';
import type { Progress } from '../util/progress.js';

/**
 * Builds the guest image (vmlinux + initramfs): the kernel under test (a Debian suite's, local .debs or a local
 * build; see kernel-spec.ts) with a Debian trixie ppc64el userland. Resolves the newest versions, downloads them
 * with a private apt configuration, verifies every .deb against the index's SHA256, and records versions, hashes
 * and what the kernel is (release, page size, config) in manifest.json. One image per variant and kernel; a warm
 * cache downloads nothing.
 */
/**
 * base: the lab's guest; with-qemu: a guest that is itself a POWER lab host (it runs QEMU), with Debian trixie's
 * QEMU, or another suite's with `with-qemu:<suite>` (e.g. with-qemu:sid): the QEMU under test inside the guest;
 * kvm-host: with-qemu plus KVM-HV (kvm, kvm-hv) and the base image of the same kernel for the guest it runs, so
 * that a guest with nested HV is a KVM lab host whose inner guest boots (INNER_BOOT_IMAGE).
 */
export type ImageVariant = 'base' | 'with-qemu' | 'kvm-host' | `with-qemu:${string}`;

export const IMAGE_VARIANT_PATTERN = /^(base|kvm-host|with-qemu(:[a-z][a-z0-9-]{1,40})?)$/;

/** Where a kvm-host image carries the base image (kernel and initramfs) its inner guests boot, as paths in that guest. */
export const INNER_BOOT_IMAGE = { kernel: '/usr/share/tcelab/inner/vmlinux', initrd: '/usr/share/tcelab/inner/initrd.cpio.gz' };

/** The variants whose guest runs QEMU: they can hold an inner lab. */
export function runsQemu(variant: ImageVariant): boolean {
  return variant !== 'base';
}

export interface ManifestFile {
  path: string;
  sha256: string;
  size: number;
}

export interface ImageManifest {
  format: 1;
  variant: ImageVariant;
  builtAt: string;
  suite: string;
  /** Which dists/ index the packages were resolved from (the codename, or its alias when the mirror was mid-sync) and its Release date. */
  index?: { dist: string; date?: string };
  architecture: string;
  kernelRelease: string;
  /** The kernel under test: where it came from, its release, page size, config values and modules. */
  kernel: KernelFacts;
  /** Packages taken from another suite than the userland's (a guest QEMU under test): the suite and which. */
  fromSuite?: { suite: string; packages: string[] };
  packages: Array<Pick<DebPackage, 'name' | 'version' | 'architecture' | 'filename' | 'sha256' | 'size'>>;
  /**
   * Userland packages the mirror listed but did not serve (its index ahead of its pool), each taken instead from
   * FALLBACK_SUITE's index, verified against it: which, the version wanted and the version taken.
   */
  substituted?: Array<{ name: string; wanted: string; took: string; suite: string }>;
  inputsSha256: string;
  /** inner: a kvm-host image's copy of the base image, at its paths in the guest (INNER_BOOT_IMAGE). */
  outputs: { kernel: ManifestFile; initrd: ManifestFile; agent?: ManifestFile; inner?: { kernel: ManifestFile; initrd: ManifestFile } };
  initramfs: { files: number; bytes: number };
}

export interface GuestImage {
  dir: string;
  kernel: string;
  initrd: string;
  manifest: ImageManifest;
}

interface VariantSpec {
  /** Packages taken by exact name; their shared-library dependencies follow. */
  packages: string[];
  /**
   * Packages (and their libraries) taken from another Debian suite than the userland's: a guest QEMU under test.
   * Where both suites would give a package (libc6…), this suite's wins: newer libraries serve the older binaries.
   */
  fromSuite?: { suite: string; packages: string[] };
  /** Dynamically linked binaries copied with the libraries they need. */
  binaries: string[];
  /** Directories copied whole (firmware blobs, data). */
  dataDirs: string[];
  /** Kernel modules beyond the guest's own (GUEST_MODULES), with what they need. */
  modules?: readonly string[];
  /** Carries the base image of the same kernel at INNER_BOOT_IMAGE, for the inner guest. */
  innerImage?: boolean;
}

const WITH_QEMU: VariantSpec = {
  packages: ['busybox-static', 'powerpc-ibm-utils', 'qemu-system-ppc', 'qemu-system-data'],
  binaries: ['/usr/sbin/drmgr', '/usr/sbin/lsslot', '/usr/bin/qemu-system-ppc64'],
  dataDirs: ['/usr/share/qemu'],
};

const VARIANTS: Record<'base' | 'with-qemu' | 'kvm-host', VariantSpec> = {
  base: {
    packages: ['busybox-static', 'powerpc-ibm-utils'],
    binaries: ['/usr/sbin/drmgr', '/usr/sbin/lsslot'],
    dataDirs: [],
  },
  'with-qemu': WITH_QEMU,
  'kvm-host': { ...WITH_QEMU, modules: KVM_HOST_MODULES, innerImage: true },
};

/** The kernel modules a variant carries beyond the guest's own (GUEST_MODULES): what a profile may ask /init to load. */
export function extraModules(variant: ImageVariant): readonly string[] {
  return IMAGE_VARIANT_PATTERN.test(variant) ? (variantSpec(variant).modules ?? []) : [];
}

/** A variant's packages, binaries and data; with-qemu:<suite> takes QEMU from that suite. */
function variantSpec(variant: ImageVariant): VariantSpec {
  if (!IMAGE_VARIANT_PATTERN.test(variant))
    throw new TcelabError(`guest image variant ${variant}`, 'is not base, with-qemu, with-qemu:<suite> or kvm-host');
  if (variant === 'base' || variant === 'kvm-host') return VARIANTS[variant];
  const suite = variant.split(':')[1];
  const spec = VARIANTS['with-qemu'];
  if (!suite || suite === SUITE) return spec;
  const qemu = ['qemu-system-ppc', 'qemu-system-data'];
  return { ...spec, packages: spec.packages.filter((p) => !qemu.includes(p)), fromSuite: { suite, packages: qemu } };
}

/** The userland's suite (and the default kernel's). */
const SUITE = 'trixie';
const ARCH = 'ppc64el';
const LIB_DIRS = ['/usr/lib/powerpc64le-linux-gnu', '/usr/lib64', '/usr/lib', '/lib/powerpc64le-linux-gnu', '/lib64', '/lib'];

/** The cache dir of a variant's image for a kernel: guest/<variant> for trixie's, guest/<variant>@<kernel key> for others. */
export function imageDir(variant: ImageVariant, kernel = DEFAULT_KERNEL, cache = cacheDir()): string {
  const key = kernelKey(parseKernelSpec(kernel));
  const name = variant.replace(':', '-');
  return join(cache, 'guest', key === SUITE ? name : `${name}@${key}`);
}

/** The image if it is built and its files still match the manifest's hashes. */
export async function findGuestImage(variant: ImageVariant, kernel = DEFAULT_KERNEL, cache = cacheDir()): Promise<GuestImage | undefined> {
  const dir = imageDir(variant, kernel, cache);
  const manifestPath = join(dir, 'manifest.json');
  if (!existsSync(manifestPath)) return undefined;
  let manifest: ImageManifest;
  try {
    manifest = JSON.parse(await readFile(manifestPath, 'utf8')) as ImageManifest;
  } catch {
    return undefined;
  }
  // An image from before kernels were inputs records no kernel facts: it is rebuilt.
  if (!manifest.kernel) return undefined;
  for (const f of [manifest.outputs.kernel, manifest.outputs.initrd]) {
    const p = join(dir, f.path);
    if (!existsSync(p) || (await stat(p)).size !== f.size) return undefined;
  }
  return { dir, kernel: join(dir, manifest.outputs.kernel.path), initrd: join(dir, manifest.outputs.initrd.path), manifest };
}

export async function requireGuestImage(variant: ImageVariant, kernel = DEFAULT_KERNEL, cache = cacheDir()): Promise<GuestImage> {
  const image = await findGuestImage(variant, kernel, cache);
  if (!image) {
    throw new TcelabError(
      `guest image "${variant}" for kernel ${kernel}`,
      `not built in ${imageDir(variant, kernel, cache)}`,
      `run \`tcelab guest build${variant === 'base' ? '' : ` --variant ${variant}`}${kernel === DEFAULT_KERNEL ? '' : ` --kernel ${kernel}`}\``,
    );
  }
  return image;
}

/** Hash of everything from this repository that goes into the image, and of the kernel it is for. */
export async function guestInputsSha256(kernel: KernelSpec = parseKernelSpec(DEFAULT_KERNEL)): Promise<string> {
  const h = createHash('sha256');
  h.update('image-builder-format-3\n');
  h.update(`kernel ${formatKernelSpec(kernel)}\n`);
  // A local kernel changes under the same name: its files are inputs too.
  const localFiles = kernel.kind === 'deb' ? kernel.files : kernel.kind === 'local' ? [kernel.vmlinux] : [];
  for (const f of localFiles) if (existsSync(f)) h.update(`${f} ${await sha256File(f)}\n`);
  if (kernel.kind === 'local' && kernel.modulesRoot && existsSync(kernel.modulesRoot))
    h.update(`modules ${(await stat(kernel.modulesRoot)).mtimeMs}\n`);
  const files = ['init.sh', ...(await listAgentSources()).map((f) => `agent/${f}`)];
  for (const f of files.sort()) {
    h.update(`${f}\n`);
    h.update(await readFile(join(guestSourceDir, f)));
  }
  return h.digest('hex');
}

async function listAgentSources(): Promise<string[]> {
  const dir = join(guestSourceDir, 'agent');
  if (!existsSync(dir)) return [];
  return (await readdir(dir)).filter((f) => /\.(c|h)$/.test(f) || f === 'Makefile').sort();
}

export interface BuildOptions {
  variant: ImageVariant;
  /** The kernel under test (kernel-spec.ts); Debian trixie's by default. */
  kernel?: string;
  /** Re-resolve package versions even if cached ones exist. */
  refresh?: boolean;
  cache?: string;
  progress: Progress;
}

export interface BuildResult {
  image: GuestImage;
  /** What the build had to do: nothing, repack from cached debs, or download. */
  action: 'up-to-date' | 'repacked' | 'downloaded';
  downloadedBytes: number;
}

type ManifestPackage = ImageManifest['packages'][number];

/** Debian packages of the image: the userland's, and the kernel's when it comes from Debian. */
interface ResolvedPackages {
  userland: DebPackage[];
  kernel: DebPackage[];
  index?: ImageManifest['index'];
  kernelSource?: KernelFacts['source'];
  fromSuite?: ImageManifest['fromSuite'];
  substituted?: ImageManifest['substituted'];
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
    const apt = new PrivateApt(join(cache, 'guest', `apt-${FALLBACK_SUITE}`), hostDebianMirror(), FALLBACK_SUITE, ARCH);
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

/** The first package whose file the mirror does not serve (HEAD), or undefined. */
async function firstNotServed(mirror: string, packages: DebPackage[]): Promise<DebPackage | undefined> {
  for (const p of packages) {
    const r = await fetch(`${mirror}/${p.filename}`, { method: 'HEAD' }).catch(() => undefined);
    // Unreachable: not a verdict on this version; the download says what failed.
    if (r && r.status === 404) return p;
  }
  return undefined;
}

export async function buildGuestImage(opts: BuildOptions): Promise<BuildResult> {
  const cache = opts.cache ?? cacheDir();
  const { progress, variant } = opts;
  const kernelText = opts.kernel ?? DEFAULT_KERNEL;
  const kernel = parseKernelSpec(kernelText);
  const spec = variantSpec(variant);
  const inputs = await guestInputsSha256(kernel);
  const existing = await findGuestImage(variant, kernelText, cache);
  const debDir = join(cache, 'guest', 'debs');

  if (existing && !opts.refresh && existing.manifest.inputsSha256 === inputs) {
    return { image: existing, action: 'up-to-date', downloadedBytes: 0 };
  }

  // Reuse the recorded package set when every .deb is still cached intact.
  let resolved: ResolvedPackages | undefined;
  if (existing && !opts.refresh) {
    const asDeb = (p: ManifestPackage): DebPackage => ({ ...p, depends: [] });
    const kernelNames = new Set(existing.manifest.kernel.source.package ? kernelPackageNames(existing.manifest) : []);
    const all = existing.manifest.packages.map(asDeb);
    const intact = await progress.step('verify cached packages', async () => {
      for (const p of all) {
        const f = join(debDir, debFileName(p));
        if (!existsSync(f) || (await sha256File(f)) !== p.sha256) return false;
      }
      return true;
    });
    if (intact) {
      resolved = {
        userland: all.filter((p) => !kernelNames.has(p.name)),
        kernel: all.filter((p) => kernelNames.has(p.name)),
        index: existing.manifest.index,
        kernelSource: existing.manifest.kernel.source,
        fromSuite: existing.manifest.fromSuite,
        substituted: existing.manifest.substituted,
      };
    }
  }

  let downloadedBytes = 0;
  let action: BuildResult['action'] = 'repacked';
  if (!resolved) {
    action = 'downloaded';
    const fresh = await resolveAll(cache, spec, kernel, progress);
    resolved = fresh;
    const toFetch = [...resolved.userland, ...resolved.kernel];
    await progress.step(`download and verify ${toFetch.length} packages`, async (update) => {
      let i = 0;
      for (const p of toFetch) {
        update(`${i + 1}/${toFetch.length} ${p.name} ${p.version}`, i / toFetch.length);
        i++;
        const had = existsSync(join(debDir, debFileName(p)));
        const got = await downloadOrSubstitute(p, fresh, cache, debDir, progress);
        if (got !== p) {
          resolved!.userland[resolved!.userland.indexOf(p)] = got;
          resolved!.substituted = [
            ...(resolved!.substituted ?? []),
            { name: p.name, wanted: p.version, took: got.version, suite: FALLBACK_SUITE },
          ];
        }
        if (!had) downloadedBytes += got.size;
      }
    });
  }
  const packages = [...resolved.userland, ...resolved.kernel];

  const work = join(cache, 'guest', `.build-${variant.replace(':', '-')}-${process.pid}`);
  await rm(work, { recursive: true, force: true });
  try {
    const staging = join(work, 'staging');
    await mkdir(staging, { recursive: true });
    await progress.step('unpack packages', async (update) => {
      for (const p of resolved!.userland) {
        update(p.name);
        await run('dpkg-deb', ['-x', join(debDir, debFileName(p)), staging], { what: `unpack ${p.name}` });
      }
    });
    const kernelDir = join(work, 'kernel');
    const staged = await progress.step(`stage the kernel (${formatKernelSpec(kernel)})`, () =>
      kernel.kind === 'local'
        ? stageLocalKernel(kernel.vmlinux, kernel.modulesRoot, kernelDir, formatKernelSpec(kernel))
        : stageKernelDebs(
            kernel.kind === 'deb' ? kernel.files : resolved!.kernel.map((p) => join(debDir, debFileName(p))),
            kernelDir,
            resolved!.kernelSource ?? { spec: formatKernelSpec(kernel), layout: 'single' },
          ),
    );
    const agent = await progress.step('cross-compile the guest agent (ppc64le, static)', () => buildAgent(work));
    // The inner guest boots the base image of the same kernel (built first; a no-op when it is up to date).
    const inner = spec.innerImage ? (await buildGuestImage({ ...opts, variant: 'base', refresh: false })).image : undefined;
    const { entries } = await progress.step('assemble initramfs', () => assembleInitramfs(staging, spec, agent, staged, inner));
    const outDir = join(work, 'out');
    await mkdir(outDir);
    const cpio = writeCpio(entries);
    const initrd = gzipSync(cpio, { level: 6 });
    await writeFile(join(outDir, 'initrd.cpio.gz'), initrd);
    await copyFile(staged.vmlinux, join(outDir, 'vmlinux'));
    const fileInfo = async (name: string): Promise<ManifestFile> => ({
      path: name,
      sha256: await sha256File(join(outDir, name)),
      size: (await stat(join(outDir, name))).size,
    });
    const manifest: ImageManifest = {
      format: 1,
      variant,
      builtAt: new Date().toISOString(),
      suite: SUITE,
      ...(resolved.index ? { index: resolved.index } : {}),
      architecture: ARCH,
      kernelRelease: staged.release,
      kernel: staged.facts,
      ...(resolved.fromSuite ? { fromSuite: resolved.fromSuite } : {}),
      ...(resolved.substituted ? { substituted: resolved.substituted } : {}),
      packages: packages.map(({ name, version, architecture, filename, sha256, size }) => ({
        name,
        version,
        architecture,
        filename,
        sha256,
        size,
      })),
      inputsSha256: inputs,
      outputs: {
        kernel: await fileInfo('vmlinux'),
        initrd: await fileInfo('initrd.cpio.gz'),
        ...(agent
          ? { agent: { path: '/usr/sbin/tcelab-agent', sha256: createHash('sha256').update(agent).digest('hex'), size: agent.length } }
          : {}),
        ...(inner
          ? {
              inner: {
                kernel: { ...inner.manifest.outputs.kernel, path: INNER_BOOT_IMAGE.kernel },
                initrd: { ...inner.manifest.outputs.initrd, path: INNER_BOOT_IMAGE.initrd },
              },
            }
          : {}),
      },
      initramfs: { files: entries.length, bytes: cpio.length },
    };
    await writeFile(join(outDir, 'manifest.json'), `${JSON.stringify(manifest, null, 2)}\n`);
    // Replace the image in one rename so a reader never sees half of it.
    const dir = imageDir(variant, kernelText, cache);
    await rm(`${dir}.old`, { recursive: true, force: true });
    if (existsSync(dir)) await rename(dir, `${dir}.old`);
    await rename(outDir, dir);
    await rm(`${dir}.old`, { recursive: true, force: true });
    return { image: { dir, kernel: join(dir, 'vmlinux'), initrd: join(dir, 'initrd.cpio.gz'), manifest }, action, downloadedBytes };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/** The kernel's packages in a manifest: those of its image package's source set (linux-{image,binary,modules,base}-<abi>-…). */
function kernelPackageNames(m: ImageManifest): string[] {
  return m.packages.filter((p) => /^linux-(image|binary|modules|base)-\d/.test(p.name)).map((p) => p.name);
}

/**
 * Resolves the userland (trixie) and, for a Debian kernel, the kernel's packages in its suite, each through a
 * private apt of its own suite. Every package keeps the apt that resolved it (it downloads from there).
 */
async function resolveAll(
  cache: string,
  spec: VariantSpec,
  kernel: KernelSpec,
  progress: Progress,
): Promise<ResolvedPackages & { apts: Map<DebPackage, PrivateApt> }> {
  const aptFor = async (suite: string) => {
    const apt = new PrivateApt(join(cache, 'guest', suite === SUITE ? 'apt' : `apt-${suite}`), hostDebianMirror(), suite, ARCH);
    await progress.step(`update Debian ${suite} ${ARCH} package lists (private apt config)`, () => apt.update());
    if (apt.dist !== suite) {
      progress.info(
        `the mirror's ${suite} index is mid-sync; using its ${apt.dist} alias (same release, signed, from ${await apt.releaseField(apt.dist, 'Date')})`,
      );
    }
    return apt;
  };
  const userlandApt = await aptFor(SUITE);
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
  if (kernel.kind !== 'debian') return { userland, kernel: [], index, apts, fromSuite };
  const kernelApt = kernel.suite === SUITE ? userlandApt : await aptFor(kernel.suite);
  const found = await progress.step(`resolve the ${kernel.flavour} kernel in Debian ${kernel.suite}`, async () => {
    let index = await kernelApt.candidates(/^linux-(image|binary|modules|base)-\d/);
    // The newest kernel the mirror serves: its index can be ahead of its pool (seen: trixie listed 6.12.117 and
    // 6.12.107, the pool had only 6.12.107). An older kernel is said, and recorded as what ran.
    for (;;) {
      const k = resolveDebianKernel(index, { ...kernel });
      const missing = await firstNotServed(kernelApt.mirror, k.packages);
      if (!missing) return k;
      progress.info(`the mirror lists ${missing.name} ${missing.version} but does not serve it; trying the next older kernel`);
      index = index.filter((p) => p.version !== k.image.version);
    }
  });
  progress.info(
    `kernel: ${found.image.name} ${found.image.version} (${found.layout} layout: ${found.packages.map((p) => p.name).join(', ')})`,
  );
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

/** Builds the guest agent with its own Makefile (guest/agent/Makefile, the cross compiler); undefined when there is no agent source. */
export async function buildAgent(work: string): Promise<Buffer | undefined> {
  const sources = (await listAgentSources()).filter((f) => f.endsWith('.c'));
  if (sources.length === 0) return undefined;
  const out = join(work, 'tcelab-agent');
  await run('make', ['-s', '-C', join(guestSourceDir, 'agent'), `OUT=${out}`, 'CC=powerpc64le-linux-gnu-gcc'], {
    what: 'cross-compile the guest agent (make in guest/agent)',
    hint: 'install make and gcc-powerpc64le-linux-gnu (scripts/bootstrap.sh does)',
  });
  const bin = await readFile(out);
  const deps = readElfDeps(bin);
  if (deps.machine !== EM_PPC64 || deps.interpreter) {
    throw new TcelabError('guest agent', 'is not a static ppc64le executable');
  }
  return bin;
}

async function assembleInitramfs(
  staging: string,
  spec: VariantSpec,
  agent: Buffer | undefined,
  kernel: StagedKernel,
  inner?: GuestImage,
): Promise<{ entries: CpioEntry[] }> {
  const entries = new Map<string, CpioEntry>();
  const addDir = (p: string) => {
    const parts = p.split('/').filter(Boolean);
    for (let i = 1; i <= parts.length; i++) {
      const d = `/${parts.slice(0, i).join('/')}`;
      if (!entries.has(d)) entries.set(d, { path: d, type: 'dir' });
    }
  };
  const addFile = (p: string, data: Buffer, mode = 0o644) => {
    addDir(posix.dirname(p));
    entries.set(p, { path: p, type: 'file', data, mode });
  };
  for (const d of [
    '/usr/bin',
    '/usr/sbin',
    '/usr/lib',
    '/usr/lib64',
    '/proc',
    '/sys',
    '/dev',
    '/tmp',
    '/run',
    '/root',
    '/etc',
    '/mnt',
    '/var',
  ])
    addDir(d);
  // Merged /usr, as in Debian trixie: binaries' PT_INTERP is /lib64/ld64.so.2.
  for (const [link, target] of [
    ['/bin', 'usr/bin'],
    ['/sbin', 'usr/sbin'],
    ['/lib', 'usr/lib'],
    ['/lib64', 'usr/lib64'],
  ] as const) {
    entries.set(link, { path: link, type: 'symlink', target });
  }
  // The kernel opens /dev/console for init before devtmpfs is mounted.
  entries.set('/dev/console', { path: '/dev/console', type: 'char', major: 5, minor: 1, mode: 0o600 });
  entries.set('/dev/null', { path: '/dev/null', type: 'char', major: 1, minor: 3, mode: 0o666 });

  addFile('/init', await readFile(join(guestSourceDir, 'init.sh')), 0o755);
  addFile('/usr/bin/busybox', await readFile(join(staging, 'usr/bin/busybox')), 0o755);
  if (agent) addFile('/usr/sbin/tcelab-agent', agent, 0o755);
  addFile('/etc/passwd', Buffer.from('root:x:0:0:root:/root:/bin/sh\n'));
  addFile('/etc/group', Buffer.from('root:x:0:\n'));

  // Kernel modules with a generated modules.dep.
  const kernelRelease = kernel.release;
  const available: Array<{ relPath: string; name: string; depends: string[]; ko: Buffer }> = [];
  for (const sub of GUEST_MODULE_DIRS) {
    for (const file of await filesUnder(join(kernel.modulesDir, sub))) {
      if (!/\.ko(\.xz)?$/.test(file)) continue;
      const ko = file.endsWith('.xz') ? await runBinary('xz', ['-dc', file], `decompress ${file}`) : await readFile(file);
      available.push({ relPath: file.slice(kernel.modulesDir.length + 1).replace(/\.xz$/, ''), ...moduleInfo(ko), ko });
    }
  }
  // Only what the guest loads, and what that needs: a smaller initramfs boots faster under TCG.
  const byName = new Map(available.map((m) => [normalizeModuleName(m.name), m]));
  const modules: typeof available = [];
  // Built into this kernel, or missing from it (the kernel's facts say so; a scenario that needs it is refused).
  const notAModule = (name: string) =>
    kernel.facts.modules[normalizeModuleName(name)] !== undefined && kernel.facts.modules[normalizeModuleName(name)] !== 'module';
  const want = (name: string) => {
    const m = byName.get(normalizeModuleName(name));
    if (!m && notAModule(name)) return;
    if (!m) throw new TcelabError('guest image', `kernel module ${name} (a dependency) is not in the kernel's module tree`);
    if (modules.includes(m)) return;
    m.depends.forEach(want);
    modules.push(m);
  };
  [...GUEST_MODULES, ...(spec.modules ?? [])].forEach(want);
  for (const m of modules) addFile(`/usr/lib/modules/${kernelRelease}/${m.relPath}`, m.ko);
  addFile(`/usr/lib/modules/${kernelRelease}/modules.dep`, Buffer.from(modulesDep(modules)));

  // Binaries, then every shared library they need (transitively), found in the staged packages.
  const wanted = [...spec.binaries];
  const seen = new Set<string>();
  while (wanted.length) {
    const p = wanted.shift()!;
    if (seen.has(p)) continue;
    seen.add(p);
    const data = await readFile(join(staging, p));
    addFile(p, data, 0o755);
    const deps = readElfDeps(data);
    if (deps.interpreter) {
      const real = await resolveInStaging(staging, deps.interpreter);
      if (!real) throw new TcelabError('guest image', `${p} needs the loader ${deps.interpreter}, which no package provides`);
      wanted.push(real);
      if (real !== normalizeUsr(deps.interpreter))
        entries.set(normalizeUsr(deps.interpreter), { path: normalizeUsr(deps.interpreter), type: 'symlink', target: real });
    }
    for (const soname of deps.needed) {
      let found: string | undefined;
      for (const dir of LIB_DIRS) {
        found = await resolveInStaging(staging, `${dir}/${soname}`);
        if (found) {
          const at = normalizeUsr(`${dir}/${soname}`);
          if (found !== at) {
            addDir(posix.dirname(at));
            entries.set(at, { path: at, type: 'symlink', target: found });
          }
          break;
        }
      }
      if (!found) throw new TcelabError('guest image', `${p} needs ${soname}, which none of the resolved packages provides`);
      wanted.push(found);
    }
  }
  for (const d of spec.dataDirs) {
    for (const file of await filesUnder(join(staging, d))) addFile(file.slice(staging.length), await readFile(file));
  }
  if (inner) {
    addFile(INNER_BOOT_IMAGE.kernel, await readFile(inner.kernel));
    addFile(INNER_BOOT_IMAGE.initrd, await readFile(inner.initrd));
  }
  return { entries: [...entries.values()] };
}

function normalizeUsr(p: string): string {
  return p.replace(/^\/(lib|lib64|bin|sbin)\//, '/usr/$1/');
}

/** Follows symlinks inside the staging tree; returns the real path (as seen in the guest) or undefined. */
async function resolveInStaging(staging: string, guestPath: string, depth = 0): Promise<string | undefined> {
  if (depth > 16) return undefined;
  const p = normalizeUsr(guestPath);
  const host = join(staging, p);
  let st: Awaited<ReturnType<typeof lstat>>;
  try {
    st = await lstat(host);
  } catch {
    return undefined;
  }
  if (st.isSymbolicLink()) {
    const target = await readlink(host);
    const next = target.startsWith('/') ? target : posix.normalize(posix.join(posix.dirname(p), target));
    return resolveInStaging(staging, next, depth + 1);
  }
  return st.isFile() ? p : undefined;
}
