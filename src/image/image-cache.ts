import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { DebPackage } from '../debian/deb-package.js';
import { sha256File } from '../debian/private-apt.js';
import type { KernelFacts } from '../kernel/kernel-facts.js';
import { sourceKernelInputs } from '../kbuild/source-kernel.js';
import {
  DEFAULT_KERNEL,
  formatKernelSpec,
  isSourceKernel,
  type KernelInput,
  kernelKey,
  parseKernelSpec,
  type KernelSpec,
} from '../kernel/kernel-spec.js';
import { cacheDir, guestSourceDir } from '../util/paths.js';
import { listAgentSources } from './agent-build.js';
import { type ImageVariant, USERLAND_SUITE } from './image-variant.js';

export interface ManifestFile {
  path: string;
  sha256: string;
  size: number;
}

/** A built image's manifest.json: what went into it (versions, hashes, the kernel's facts) and what came out. */
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

/** A built image in the cache: its dir, the paths of its kernel and initramfs, and its manifest. */
export interface GuestImage {
  dir: string;
  kernel: string;
  initrd: string;
  manifest: ImageManifest;
}

/** The cache dir of a variant's image for a kernel: guest/<variant> for trixie's, guest/<variant>@<kernel key> for others. */
export function imageDir(variant: ImageVariant, kernel = DEFAULT_KERNEL, cache = cacheDir()): string {
  const key = kernelKey(parseKernelSpec(kernel));
  const name = variant.replace(':', '-');
  return join(cache, 'guest', key === USERLAND_SUITE ? name : `${name}@${key}`);
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

/** Hash of everything from this repository that goes into the image, and of the kernel it is for. */
export async function guestInputsSha256(
  kernel: KernelSpec = parseKernelSpec(DEFAULT_KERNEL),
  input: KernelInput = { field: '--kernel', text: formatKernelSpec(kernel) },
): Promise<string> {
  const h = createHash('sha256');
  h.update('image-builder-format-3\n');
  h.update(`kernel ${formatKernelSpec(kernel)}\n`);
  // A kernel built from source: its tree's content, the configuration and the compiler.
  if (isSourceKernel(kernel)) h.update(`source ${await sourceKernelInputs(kernel, input)}\n`);
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

/** Puts a built image (outDir: vmlinux, initrd.cpio.gz) with its manifest into the cache at dir, in place of the one there. */
export async function storeGuestImage(outDir: string, manifest: ImageManifest, dir: string): Promise<GuestImage> {
  await writeFile(join(outDir, 'manifest.json'), `${JSON.stringify(manifest, null, 2)}\n`);
  // Replace the image in one rename so a reader never sees half of it.
  await rm(`${dir}.old`, { recursive: true, force: true });
  if (existsSync(dir)) await rename(dir, `${dir}.old`);
  await rename(outDir, dir);
  await rm(`${dir}.old`, { recursive: true, force: true });
  return { dir, kernel: join(dir, 'vmlinux'), initrd: join(dir, 'initrd.cpio.gz'), manifest };
}
