import { createHash } from 'node:crypto';
import { copyFile, mkdir, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { debFileName } from '../debian/deb-package.js';
import { sha256File } from '../debian/private-apt.js';
import type { BuiltKernel } from '../kbuild/lab-kernel.js';
import { buildSourceKernel } from '../kbuild/source-kernel.js';
import { DEFAULT_KERNEL, formatKernelSpec, isSourceKernel, type KernelSpec, parseKernelSpec } from '../kernel/kernel-spec.js';
import { type StagedKernel, stageKernelDebs, stageLocalKernel } from '../kernel/stage-kernel.js';
import { checkKernelFiles } from '../kernel/unresolvable-kernel.js';
import { TcelabError } from '../util/errors.js';
import { run } from '../util/exec.js';
import { cacheDir } from '../util/paths.js';
import type { Progress } from '../util/progress.js';
import { buildAgent } from './agent-build.js';
import { writeCpio } from './cpio.js';
import {
  findGuestImage,
  type GuestImage,
  guestInputsSha256,
  type ImageManifest,
  imageDir,
  type ManifestFile,
  storeGuestImage,
} from './image-cache.js';
import { INNER_BOOT_IMAGE, type ImageVariant, USERLAND_ARCH, USERLAND_SUITE, variantSpec } from './image-variant.js';
import { assembleInitramfs } from './initramfs.js';
import { cachedPackages, downloadPackages, type ResolvedPackages, resolveAll } from './package-resolution.js';

export interface BuildOptions {
  variant: ImageVariant;
  /** The kernel under test (kernel-spec.ts); Debian trixie's by default. */
  kernel?: string;
  /** Where the kernel spec came from, named when it cannot resolve: --kernel (the default), --kernels, a profile's guest.kernel. */
  kernelField?: string;
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

/**
 * Builds the guest image (vmlinux + initramfs): the kernel under test (a Debian suite's, local .debs or a local
 * build; see kernel-spec.ts) with a Debian trixie ppc64el userland. Resolves the newest versions, downloads them
 * with a private apt configuration, verifies every .deb against the index's SHA256, and records versions, hashes
 * and what the kernel is (release, page size, config) in manifest.json. One image per variant and kernel; a warm
 * cache downloads nothing.
 */
export async function buildGuestImage(opts: BuildOptions): Promise<BuildResult> {
  const cache = opts.cache ?? cacheDir();
  const { progress, variant } = opts;
  const kernelText = opts.kernel ?? DEFAULT_KERNEL;
  const kernelInput = { field: opts.kernelField ?? '--kernel', text: kernelText };
  const kernel = parseKernelSpec(kernelText, kernelInput.field);
  // A spec that cannot resolve is refused before anything is built: its files here, its Debian suite on the mirror (resolveAll).
  checkKernelFiles(kernel, kernelInput);
  const spec = variantSpec(variant);
  const inputs = await guestInputsSha256(kernel, kernelInput);
  const existing = await findGuestImage(variant, kernelText, cache);
  const debDir = join(cache, 'guest', 'debs');

  if (existing && !opts.refresh && existing.manifest.inputsSha256 === inputs) {
    return { image: existing, action: 'up-to-date', downloadedBytes: 0 };
  }

  // A kernel from source is built first: a spec that cannot resolve, an option its tree cannot give or a build
  // that fails stops here, before any package is fetched.
  const built = isSourceKernel(kernel) ? await buildSourceKernel(kernel, kernelInput, cache, progress) : undefined;

  // Reuse the recorded package set when every .deb is still cached intact.
  let resolved: ResolvedPackages | undefined =
    existing && !opts.refresh ? await cachedPackages(existing.manifest, debDir, progress) : undefined;
  // A kernel that comes without Debian packages (a local build, .debs, one built from source) takes the userland the
  // default kernel's image of this variant recorded, while its .debs are all cached intact: the same packages,
  // resolved and verified once, instead of another resolution for the same userland (≈ 8 s measured).
  if (!resolved && !opts.refresh && kernel.kind !== 'debian') {
    const sibling = await findGuestImage(variant, DEFAULT_KERNEL, cache);
    const shared = sibling ? await cachedPackages(sibling.manifest, debDir, progress) : undefined;
    if (shared) {
      resolved = { ...shared, kernel: [], kernelSource: undefined };
      progress.info(
        `userland: the packages the ${DEFAULT_KERNEL} image of ${variant} recorded (index of ${shared.index?.date ?? 'unknown date'})`,
      );
    }
  }
  let downloadedBytes = 0;
  let action: BuildResult['action'] = 'repacked';
  if (!resolved) {
    action = 'downloaded';
    const fresh = await resolveAll(cache, spec, kernel, progress, kernelInput);
    resolved = fresh;
    downloadedBytes = await downloadPackages(fresh, cache, debDir, progress);
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
    const staged = await stageKernel(kernel, join(work, 'kernel'), { built, debDir, resolved, progress });
    const agent = await progress.step('the guest agent (ppc64le, static; cross-compiled once per source)', () => buildAgent(work, cache));
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
      suite: USERLAND_SUITE,
      ...(resolved.index ? { index: resolved.index } : {}),
      architecture: USERLAND_ARCH,
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
    const image = await storeGuestImage(outDir, manifest, imageDir(variant, kernelText, cache));
    return { image, action, downloadedBytes };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/**
 * The kernel, laid out for the image: Debian's packages unpacked, a local build copied, a kernel from source built
 * (or found built) and then staged as a local build is.
 */
async function stageKernel(
  kernel: KernelSpec,
  dir: string,
  ctx: { built?: BuiltKernel; debDir: string; resolved: ResolvedPackages; progress: Progress },
): Promise<StagedKernel> {
  const text = formatKernelSpec(kernel);
  const built = ctx.built;
  if (built) {
    const staged = await ctx.progress.step(`stage the kernel (${text})`, () =>
      stageLocalKernel(built.vmlinux, built.modulesRoot, dir, text),
    );
    const build = {
      tree: built.source.describe,
      dir: built.source.dir,
      out: built.out,
      content: built.source.key,
      key: built.key,
      buildMs: built.buildMs,
    };
    return { ...staged, facts: { ...staged.facts, source: { spec: text, layout: 'source', build } } };
  }
  return ctx.progress.step(`stage the kernel (${text})`, () =>
    kernel.kind === 'local'
      ? stageLocalKernel(kernel.vmlinux, kernel.modulesRoot, dir, text)
      : stageKernelDebs(
          kernel.kind === 'deb' ? kernel.files : ctx.resolved.kernel.map((p) => join(ctx.debDir, debFileName(p))),
          dir,
          ctx.resolved.kernelSource ?? { spec: text, layout: 'single' },
        ),
  );
}

/** The built image of a variant and kernel; an error that says how to build it when there is none. */
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
