import { KVM_HOST_MODULES } from '../kernel/kernel-facts.js';
import { TcelabError } from '../util/errors.js';

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

import { USERLAND_SUITE } from '../debian/guest-suite.js';

/** The userland's suite (and the default kernel's) and architecture: the debian room's. */
export { USERLAND_ARCH, USERLAND_SUITE } from '../debian/guest-suite.js';

/** What goes into a variant's image besides the kernel, /init and the agent. */
export interface VariantSpec {
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
export function variantSpec(variant: ImageVariant): VariantSpec {
  if (!IMAGE_VARIANT_PATTERN.test(variant))
    throw new TcelabError(`guest image variant ${variant}`, 'is not base, with-qemu, with-qemu:<suite> or kvm-host');
  if (variant === 'base' || variant === 'kvm-host') return VARIANTS[variant];
  const suite = variant.split(':')[1];
  const spec = VARIANTS['with-qemu'];
  if (!suite || suite === USERLAND_SUITE) return spec;
  const qemu = ['qemu-system-ppc', 'qemu-system-data'];
  return { ...spec, packages: spec.packages.filter((p) => !qemu.includes(p)), fromSuite: { suite, packages: qemu } };
}
