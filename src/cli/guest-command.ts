import type { KernelFacts } from '../kernel/kernel-facts.js';
import { DEFAULT_KERNEL, parseKernelSpec, withKconfigAdditions } from '../kernel/kernel-spec.js';
import { kconfigAdditions } from '../qemu/profile.js';
import { buildGuestImage } from '../image/image-builder.js';
import { IMAGE_VARIANT_PATTERN, type ImageVariant } from '../image/image-variant.js';
import { InputError } from '../util/errors.js';
import { StderrProgress } from '../util/progress.js';
import { formatBytes, formatMs } from './output.js';

export async function guestBuildCommand(args: {
  variant: ImageVariant;
  refresh: boolean;
  json: boolean;
  kernel?: string;
}): Promise<number> {
  if (args.kernel !== undefined) parseKernelSpec(args.kernel, '--kernel');
  // --kconfig-add without --kernel: for the default kernel, which is built already (bad input, said so).
  if (args.kernel === undefined && kconfigAdditions().length) withKconfigAdditions(DEFAULT_KERNEL, kconfigAdditions());
  if (!IMAGE_VARIANT_PATTERN.test(args.variant))
    throw new InputError('--variant', args.variant, 'must be base, with-qemu, with-qemu:<suite> or kvm-host');
  const progress = new StderrProgress();
  const t0 = Date.now();
  const result = await buildGuestImage({
    variant: args.variant,
    kernel: args.kernel,
    kernelField: '--kernel',
    refresh: args.refresh,
    progress,
  });
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
      `  kernel:  ${m.kernelRelease} (vmlinux ${formatBytes(m.outputs.kernel.size)}) from ${describeKernelSource(m.kernel)}\n` +
      `           ${m.kernel.pageSize / 1024} KiB pages; ${Object.entries(m.kernel.config)
        .map(([k, v]) => `${k}=${v}`)
        .join(' ')}\n` +
      `           modules: ${Object.entries(m.kernel.modules)
        .map(([k, v]) => `${k} ${v}`)
        .join(', ')}\n` +
      `  initrd:  ${formatBytes(m.outputs.initrd.size)} gzip, ${m.initramfs.files} entries, ${formatBytes(m.initramfs.bytes)} unpacked\n` +
      (m.fromSuite ? `  from Debian ${m.fromSuite.suite}: ${m.fromSuite.packages.join(', ')}\n` : '') +
      `  packages (Debian ${m.suite} ${m.architecture}${m.fromSuite ? `, and ${m.fromSuite.suite} as above` : ''}):\n` +
      m.packages.map((p) => `    ${p.name.padEnd(40)} ${p.version.padEnd(22)} sha256:${p.sha256.slice(0, 16)}…\n`).join(''),
  );
  return 0;
}

/** "Debian package linux-image-… 6.12.107-1", a kernel built from source with its tree, or the spec of a local kernel. */
export function describeKernelSource(k: KernelFacts): string {
  if (k.source.build) {
    const b = k.source.build;
    return `${b.tree}, built in ${b.out} (${b.buildMs ? `make took ${formatMs(b.buildMs)}` : 'built before'}) (${k.source.spec})`;
  }
  return k.source.package ? `${k.source.package} ${k.source.version} (${k.source.spec})` : k.source.spec;
}
