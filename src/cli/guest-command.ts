import { buildGuestImage, type GuestImage, type ImageVariant } from '../image/image-builder.js';
import type { Profile } from '../qemu/profile.js';
import type { Progress } from '../util/progress.js';
import { StderrProgress } from '../util/progress.js';
import { formatBytes, formatMs } from './output.js';

export async function guestBuildCommand(args: { variant: ImageVariant; refresh: boolean; json: boolean }): Promise<number> {
  const progress = new StderrProgress();
  const t0 = Date.now();
  const result = await buildGuestImage({ variant: args.variant, refresh: args.refresh, progress });
  const m = result.image.manifest;
  const elapsed = Date.now() - t0;
  if (args.json) {
    process.stdout.write(
      `${JSON.stringify(
        { action: result.action, elapsedMs: elapsed, downloadedBytes: result.downloadedBytes, dir: result.image.dir, manifest: m },
        null,
        2,
      )}\n`,
    );
    return 0;
  }
  const verb = { 'up-to-date': 'is up to date', repacked: 'was repacked from cached packages', downloaded: 'was built' }[result.action];
  process.stdout.write(
    `guest image "${m.variant}" ${verb} in ${formatMs(elapsed)} (downloaded ${formatBytes(result.downloadedBytes)})\n` +
      `  dir:     ${result.image.dir}\n` +
      `  kernel:  ${m.kernelRelease} (vmlinux ${formatBytes(m.outputs.kernel.size)})\n` +
      `  initrd:  ${formatBytes(m.outputs.initrd.size)} gzip, ${m.initramfs.files} entries, ${formatBytes(m.initramfs.bytes)} unpacked\n` +
      `  packages (Debian ${m.suite} ${m.architecture}):\n` +
      m.packages.map((p) => `    ${p.name.padEnd(40)} ${p.version.padEnd(22)} sha256:${p.sha256.slice(0, 16)}…\n`).join(''),
  );
  return 0;
}

/**
 * The guest image a profile boots, built first where missing or stale: a run
 * from a clean checkout needs no separate build step (up to date: ~20 ms).
 */
export async function ensureGuestImage(profile: Profile, progress: Progress): Promise<GuestImage> {
  const variant = profile.guest.image;
  const r = await buildGuestImage({ variant, refresh: false, progress });
  if (r.action !== 'up-to-date')
    progress.info(`guest image "${variant}" ${r.action === 'downloaded' ? 'built' : 'rebuilt'} (${r.image.dir})`);
  return r.image;
}

/** ensureGuestImage for every variant these profiles boot, one build at a time. */
export async function ensureGuestImages(profiles: Profile[], progress: Progress): Promise<void> {
  const byVariant = new Map(profiles.map((p) => [p.guest.image, p]));
  for (const p of byVariant.values()) await ensureGuestImage(p, progress);
}
