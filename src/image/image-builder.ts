import { mkdir, readFile, writeFile, rm, rename, readdir, stat, readlink, copyFile, lstat } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import { join, posix } from 'node:path';
import { PrivateApt, sha256File, debFileName, type DebPackage } from './private-apt.js';
import { hostDebianMirror } from './apt-sources.js';
import { writeCpio, type CpioEntry } from './cpio.js';
import { moduleInfo, modulesDep, normalizeModuleName } from './kmod.js';
import { readElfDeps, EM_PPC64 } from './elf.js';
import { run, runBinary } from '../util/exec.js';
import { TcelabError } from '../util/errors.js';
import { cacheDir, guestSourceDir } from '../util/paths.js';
import type { Progress } from '../util/progress.js';

/**
 * Builds the guest image (vmlinux + initramfs) from Debian trixie ppc64el
 * packages: resolves the newest versions, downloads them with a private apt
 * configuration, verifies every .deb against the index's SHA256, and records
 * versions and hashes in manifest.json. A warm cache downloads nothing.
 */
export type ImageVariant = 'base' | 'with-qemu';

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
  packages: Array<Pick<DebPackage, 'name' | 'version' | 'architecture' | 'filename' | 'sha256' | 'size'>>;
  inputsSha256: string;
  outputs: { kernel: ManifestFile; initrd: ManifestFile; agent?: ManifestFile };
  initramfs: { files: number; bytes: number };
}

export interface GuestImage {
  dir: string;
  kernel: string;
  initrd: string;
  manifest: ImageManifest;
}

/** Where the guest's modules are unpacked from, and which it loads (their deps follow from .modinfo). */
const GUEST_MODULE_DIRS = ['kernel/drivers/vfio', 'kernel/drivers/pci/hotplug'];
const GUEST_MODULES = ['vfio', 'vfio_iommu_spapr_tce', 'vfio_pci', 'rpadlpar_io'];

interface VariantSpec {
  /** Packages taken by exact name; their shared-library dependencies follow. */
  packages: string[];
  /** Dynamically linked binaries copied with the libraries they need. */
  binaries: string[];
  /** Directories copied whole (firmware blobs, data). */
  dataDirs: string[];
}

const VARIANTS: Record<ImageVariant, VariantSpec> = {
  base: {
    packages: ['busybox-static', 'powerpc-ibm-utils'],
    binaries: ['/usr/sbin/drmgr', '/usr/sbin/lsslot'],
    dataDirs: [],
  },
  'with-qemu': {
    packages: ['busybox-static', 'powerpc-ibm-utils', 'qemu-system-ppc', 'qemu-system-data'],
    binaries: ['/usr/sbin/drmgr', '/usr/sbin/lsslot', '/usr/bin/qemu-system-ppc64'],
    dataDirs: ['/usr/share/qemu'],
  },
};

const KERNEL_PATTERN = /^linux-image-6\.12\.\d+\+deb\d+-powerpc64le$/;
const SUITE = 'trixie';
const ARCH = 'ppc64el';
const LIB_DIRS = ['/usr/lib/powerpc64le-linux-gnu', '/usr/lib64', '/usr/lib', '/lib/powerpc64le-linux-gnu', '/lib64', '/lib'];

export function imageDir(variant: ImageVariant, cache = cacheDir()): string {
  return join(cache, 'guest', variant);
}

/** The image if it is built and its files still match the manifest's hashes. */
export async function findGuestImage(variant: ImageVariant, cache = cacheDir()): Promise<GuestImage | undefined> {
  const dir = imageDir(variant, cache);
  const manifestPath = join(dir, 'manifest.json');
  if (!existsSync(manifestPath)) return undefined;
  let manifest: ImageManifest;
  try {
    manifest = JSON.parse(await readFile(manifestPath, 'utf8')) as ImageManifest;
  } catch {
    return undefined;
  }
  for (const f of [manifest.outputs.kernel, manifest.outputs.initrd]) {
    const p = join(dir, f.path);
    if (!existsSync(p) || (await stat(p)).size !== f.size) return undefined;
  }
  return { dir, kernel: join(dir, manifest.outputs.kernel.path), initrd: join(dir, manifest.outputs.initrd.path), manifest };
}

export async function requireGuestImage(variant: ImageVariant, cache = cacheDir()): Promise<GuestImage> {
  const image = await findGuestImage(variant, cache);
  if (!image) {
    throw new TcelabError(
      `guest image "${variant}"`,
      `not built in ${imageDir(variant, cache)}`,
      `run \`tcelab guest build${variant === 'base' ? '' : ` --variant ${variant}`}\``,
    );
  }
  return image;
}

/** Hash of everything from this repository that goes into the image. */
export async function guestInputsSha256(): Promise<string> {
  const h = createHash('sha256');
  h.update('image-builder-format-2\n');
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

export async function buildGuestImage(opts: BuildOptions): Promise<BuildResult> {
  const cache = opts.cache ?? cacheDir();
  const { progress, variant } = opts;
  const spec = VARIANTS[variant];
  const inputs = await guestInputsSha256();
  const existing = await findGuestImage(variant, cache);
  const debDir = join(cache, 'guest', 'debs');

  if (existing && !opts.refresh && existing.manifest.inputsSha256 === inputs) {
    return { image: existing, action: 'up-to-date', downloadedBytes: 0 };
  }

  // Reuse the recorded package set when every .deb is still cached intact.
  let packages: DebPackage[] | undefined;
  if (existing && !opts.refresh) {
    const cached = existing.manifest.packages.map((p) => ({ ...p, depends: [] }));
    const intact = await progress.step('verify cached packages', async () => {
      for (const p of cached) {
        const f = join(debDir, debFileName(p));
        if (!existsSync(f) || (await sha256File(f)) !== p.sha256) return false;
      }
      return true;
    });
    if (intact) packages = cached;
  }

  let downloadedBytes = 0;
  let action: BuildResult['action'] = 'repacked';
  // A repack keeps the record of where its packages were resolved.
  let index: ImageManifest['index'] = packages ? existing?.manifest.index : undefined;
  if (!packages) {
    action = 'downloaded';
    const apt = new PrivateApt(join(cache, 'guest', 'apt'), hostDebianMirror(), SUITE, ARCH);
    await progress.step(`update Debian ${SUITE} ${ARCH} package lists (private apt config)`, () => apt.update());
    index = { dist: apt.dist, date: await apt.releaseField(apt.dist, 'Date') };
    if (apt.dist !== SUITE)
      progress.info(
        `the mirror's ${SUITE} index is mid-sync; using its ${apt.dist} alias (same release, signed, from ${index.date ?? 'unknown date'})`,
      );
    packages = await progress.step('resolve package versions', () => resolvePackages(apt, spec));
    const toFetch = packages;
    await progress.step(`download and verify ${toFetch.length} packages`, async (update) => {
      let i = 0;
      for (const p of toFetch) {
        update(`${i + 1}/${toFetch.length} ${p.name} ${p.version}`, i / toFetch.length);
        i++;
        const target = join(debDir, debFileName(p));
        const had = existsSync(target);
        await apt.download(p, debDir);
        if (!had) downloadedBytes += p.size;
      }
    });
  }

  const work = join(cache, 'guest', `.build-${variant}-${process.pid}`);
  await rm(work, { recursive: true, force: true });
  try {
    const staging = join(work, 'staging');
    await mkdir(staging, { recursive: true });
    const kernelPkg = packages.find((p) => KERNEL_PATTERN.test(p.name));
    if (!kernelPkg) throw new TcelabError('guest image', 'no kernel package in the package set');
    await progress.step('unpack packages', async (update) => {
      for (const p of packages!) {
        update(p.name);
        const deb = join(debDir, debFileName(p));
        if (p === kernelPkg) {
          // Only the kernel and the modules the guest loads: the rest is ~300 MB.
          await run(
            'bash',
            [
              '-o',
              'pipefail',
              '-c',
              `dpkg-deb --fsys-tarfile "$1" | tar -x -C "$2" --wildcards './boot/vmlinux-*' ` +
                `${GUEST_MODULE_DIRS.map((d) => `'./usr/lib/modules/*/${d}/*'`).join(' ')}`,
              'unpack',
              deb,
              staging,
            ],
            { what: `unpack ${p.name}` },
          );
        } else {
          await run('dpkg-deb', ['-x', deb, staging], { what: `unpack ${p.name}` });
        }
      }
    });
    const agent = await progress.step('cross-compile the guest agent (ppc64le, static)', () => buildAgent(work));
    const { entries, kernelRelease } = await progress.step('assemble initramfs', () => assembleInitramfs(staging, spec, agent));
    const outDir = join(work, 'out');
    await mkdir(outDir);
    const cpio = writeCpio(entries);
    const initrd = gzipSync(cpio, { level: 6 });
    await writeFile(join(outDir, 'initrd.cpio.gz'), initrd);
    await copyFile(join(staging, 'boot', `vmlinux-${kernelRelease}`), join(outDir, 'vmlinux'));
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
      ...(index ? { index } : {}),
      architecture: ARCH,
      kernelRelease,
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
      },
      initramfs: { files: entries.length, bytes: cpio.length },
    };
    await writeFile(join(outDir, 'manifest.json'), `${JSON.stringify(manifest, null, 2)}\n`);
    // Replace the image in one rename so a reader never sees half of it.
    const dir = imageDir(variant, cache);
    await rm(`${dir}.old`, { recursive: true, force: true });
    if (existsSync(dir)) await rename(dir, `${dir}.old`);
    await rename(outDir, dir);
    await rm(`${dir}.old`, { recursive: true, force: true });
    return { image: { dir, kernel: join(dir, 'vmlinux'), initrd: join(dir, 'initrd.cpio.gz'), manifest }, action, downloadedBytes };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/** Kernel (newest 6.12), the variant's packages, and their shared-library dependency closure. */
async function resolvePackages(apt: PrivateApt, spec: VariantSpec): Promise<DebPackage[]> {
  const out = new Map<string, DebPackage>();
  const kernel = await apt.newest(KERNEL_PATTERN);
  out.set(kernel.name, kernel);
  const queue = [...spec.packages];
  // Follow only library packages: the image carries binaries, not whole systems.
  const follow = (name: string) => /^(lib|zlib1g$)/.test(name) && !/-(base|common|data|bin|dev|doc)$/.test(name) && name !== 'libc-bin';
  while (queue.length) {
    const name = queue.shift()!;
    if (out.has(name)) continue;
    const pkg = await apt.show(name);
    out.set(name, pkg);
    for (const group of pkg.depends) {
      if (group.some((alt) => out.has(alt))) continue;
      const pick = group.find(follow);
      if (pick) queue.push(pick);
    }
  }
  return [...out.values()];
}

/** Builds guest/agent/*.c with the cross compiler; undefined when there is no agent source. */
async function buildAgent(work: string): Promise<Buffer | undefined> {
  const sources = (await listAgentSources()).filter((f) => f.endsWith('.c'));
  if (sources.length === 0) return undefined;
  const out = join(work, 'tcelab-agent');
  await run(
    'powerpc64le-linux-gnu-gcc',
    [
      '-static',
      '-s',
      '-O2',
      '-Wall',
      '-Wextra',
      '-Werror',
      '-std=gnu11',
      '-D_GNU_SOURCE',
      '-o',
      out,
      ...sources.map((s) => join(guestSourceDir, 'agent', s)),
    ],
    { what: 'cross-compile the guest agent', hint: 'install gcc-powerpc64le-linux-gnu (scripts/bootstrap.sh does)' },
  );
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
): Promise<{ entries: CpioEntry[]; kernelRelease: string }> {
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
  const modRoot = join(staging, 'usr/lib/modules');
  const [kernelRelease] = await readdir(modRoot);
  if (!kernelRelease) throw new TcelabError('guest image', 'the kernel package has no modules directory');
  const available: Array<{ relPath: string; name: string; depends: string[]; ko: Buffer }> = [];
  for (const sub of GUEST_MODULE_DIRS) {
    for (const file of await walk(join(modRoot, kernelRelease, sub))) {
      if (!file.endsWith('.ko.xz')) continue;
      const ko = await runBinary('xz', ['-dc', file], `decompress ${file}`);
      available.push({ relPath: file.slice(join(modRoot, kernelRelease).length + 1).replace(/\.xz$/, ''), ...moduleInfo(ko), ko });
    }
  }
  // Only what the guest loads, and what that needs: a smaller initramfs boots faster under TCG.
  const byName = new Map(available.map((m) => [normalizeModuleName(m.name), m]));
  const modules: typeof available = [];
  const want = (name: string) => {
    const m = byName.get(normalizeModuleName(name));
    if (!m) throw new TcelabError('guest image', `kernel module ${name} is not in the kernel package`);
    if (modules.includes(m)) return;
    m.depends.forEach(want);
    modules.push(m);
  };
  GUEST_MODULES.forEach(want);
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
    for (const file of await walk(join(staging, d))) addFile(file.slice(staging.length), await readFile(file));
  }
  return { entries: [...entries.values()], kernelRelease };
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

async function walk(dir: string): Promise<string[]> {
  if (!existsSync(dir)) return [];
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await walk(p)));
    else if (e.isFile()) out.push(p);
  }
  return out.sort();
}
