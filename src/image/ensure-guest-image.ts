import type { KernelFacts } from '../kernel/kernel-facts.js';
import { parseKernelSpec } from '../kernel/kernel-spec.js';
import { localKernelFacts } from '../kernel/stage-kernel.js';
import { checkKernelFiles } from '../kernel/unresolvable-kernel.js';
import type { Progress } from '../util/progress.js';
import { buildGuestImage } from './image-builder.js';
import type { GuestImage } from './image-cache.js';
import type { ImageVariant } from './image-variant.js';

/** What a profile says of the image its guest boots: the variant and the kernel (a Profile is one). */
export interface GuestImageChoice {
  name?: string;
  guest: { image: ImageVariant; kernel: string };
}

/**
 * Where a profile's kernel spec came from, to name it when it cannot resolve: --kernel (the CLI passes it as
 * TCELAB_KERNEL, which every profile a command loads takes), or else the profile's own guest.kernel.
 */
function kernelField(profile: GuestImageChoice, env: NodeJS.ProcessEnv = process.env): string {
  if (env.TCELAB_KERNEL !== undefined && env.TCELAB_KERNEL === profile.guest.kernel) return '--kernel';
  return `${profile.name ? `profile ${profile.name} ` : ''}guest.kernel`;
}

/**
 * The guest image a profile boots, built first where missing or stale: a run
 * from a clean checkout needs no separate build step (up to date: ~20 ms).
 */
export async function ensureGuestImage(profile: GuestImageChoice, progress: Progress): Promise<GuestImage> {
  const variant = profile.guest.image;
  const r = await buildGuestImage({ variant, kernel: profile.guest.kernel, kernelField: kernelField(profile), refresh: false, progress });
  if (r.action !== 'up-to-date')
    progress.info(
      `guest image "${variant}" for ${profile.guest.kernel} ${r.action === 'downloaded' ? 'built' : 'rebuilt'} (${r.image.dir})`,
    );
  return r.image;
}

/** ensureGuestImage for every variant and kernel these profiles boot, one build at a time. */
export async function ensureGuestImages(profiles: GuestImageChoice[], progress: Progress): Promise<void> {
  const byImage = new Map(profiles.map((p) => [`${p.guest.image} ${p.guest.kernel}`, p]));
  for (const p of byImage.values()) await ensureGuestImage(p, progress);
}

/**
 * The facts of a profile's kernel where they need no build and no download (a local build, read where it lies);
 * undefined for the others. Its files are checked first, as the image build would check them.
 */
export async function kernelFactsBeforeBuild(profile: GuestImageChoice): Promise<KernelFacts | undefined> {
  const input = { field: kernelField(profile), text: profile.guest.kernel };
  const kernel = parseKernelSpec(input.text, input.field);
  if (kernel.kind !== 'local') return undefined;
  checkKernelFiles(kernel, input);
  return localKernelFacts(kernel.vmlinux, kernel.modulesRoot, input.text);
}
