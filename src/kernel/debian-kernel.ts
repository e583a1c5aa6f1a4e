import type { DebPackage } from '../debian/deb-package.js';
import { compareDebianVersions } from '../debian/debian-version.js';
import { InputError, TcelabError } from '../util/errors.js';
import { formatKernelSpec, type KernelFlavour, type KernelInput, versionMatches } from './kernel-spec.js';

/**
 * Debian ships a ppc64el kernel in one of two layouts:
 * - single (6.12): `linux-image-<abi>-<flavour>` holds /boot/vmlinux-<release>, /boot/config-<release> and the
 *   modules;
 * - split (7.x): `linux-image-<abi>-<flavour>` is a small package that depends on `linux-binary-…` (the vmlinuz,
 *   an ELF vmlinux, in /usr/lib/modules/<release>/), `linux-modules-…` and `linux-base-…` (config, System.map,
 *   modules.builtin).
 * The resolver picks the newest image package of a flavour (optionally of versions matching a glob) from an
 * index, and the parts its layout needs, at the exact version the image package depends on.
 */
export interface DebianKernel {
  layout: 'single' | 'split';
  /** The ABI part of the package names: 6.12.107+deb13, 7.3. */
  abi: string;
  flavour: KernelFlavour;
  image: DebPackage;
  /** The packages to download: the image itself (single) or binary, modules and base (split). */
  packages: DebPackage[];
}

const PARTS = ['binary', 'modules', 'base'] as const;

/** `linux-image-<abi>-<flavour>` of exactly this flavour (not -dbg, not the unversioned meta package). */
function imageAbi(name: string, flavour: KernelFlavour): string | undefined {
  const m = /^linux-image-(\d+\.\d+[^-]*)-(powerpc64le(?:-64k)?)$/.exec(name);
  return m && m[2] === flavour ? m[1] : undefined;
}

/**
 * The newest kernel of the index that the spec wants. None is bad input (the suite has no kernel of this flavour,
 * or none of the versions the glob asks for), named as `input` gave it.
 */
export function resolveDebianKernel(
  index: DebPackage[],
  want: { flavour: KernelFlavour; versionGlob?: string; suite: string },
  input: KernelInput = { field: '--kernel', text: formatKernelSpec({ kind: 'debian', ...want }) },
): DebianKernel {
  const images = index
    .filter((p) => imageAbi(p.name, want.flavour) !== undefined && versionMatches(p.version, want.versionGlob))
    .sort((a, b) => compareDebianVersions(b.version, a.version));
  const image = images[0];
  if (!image) {
    const any = index.filter((p) => imageAbi(p.name, want.flavour) !== undefined).map((p) => p.version);
    throw new InputError(
      input.field,
      input.text,
      want.versionGlob && any.length
        ? `no version matches ${want.versionGlob} (the mirror has ${[...new Set(any)].join(', ')})`
        : `Debian ${want.suite}'s index has no linux-image-<abi>-${want.flavour} package`,
      'check the suite name and the version glob; `tcelab guest build --refresh` updates the package lists',
    );
  }
  const abi = imageAbi(image.name, want.flavour)!;
  // The split layout's parts, as the image package depends on them (= the same version).
  const wanted = PARTS.map((part) => `linux-${part}-${abi}-${want.flavour}`).filter((n) => image.depends.some((g) => g.includes(n)));
  if (wanted.length === 0) return { layout: 'single', abi, flavour: want.flavour, image, packages: [image] };
  const parts = wanted.map((name) => {
    const p = index.find((x) => x.name === name && x.version === image.version);
    if (!p) throw new TcelabError(`resolve ${image.name} ${image.version}`, `its dependency ${name} ${image.version} is not in the index`);
    return p;
  });
  if (parts.length !== PARTS.length) {
    throw new TcelabError(
      `resolve ${image.name} ${image.version}`,
      `expected it to depend on linux-{binary,modules,base}-${abi}-${want.flavour}`,
    );
  }
  return { layout: 'split', abi, flavour: want.flavour, image, packages: parts };
}
