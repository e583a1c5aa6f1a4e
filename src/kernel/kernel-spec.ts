import { createHash } from 'node:crypto';
import { isAbsolute, resolve } from 'node:path';
import { InputError } from '../util/errors.js';

/**
 * The guest kernel under test, as a user names it (a profile's guest.kernel, --kernel):
 * - `debian:<suite>[/4k|/64k][@<version glob>]`: the newest ppc64el kernel of a Debian suite on the mirror
 *   (trixie, trixie-backports, sid, experimental…), 4 KiB pages unless /64k, optionally only versions matching
 *   the glob (`debian:sid@7.2.*`);
 * - `deb:<file.deb>[,<file.deb>…]`: local Debian kernel packages (one 6.12-style image package, or the
 *   image/binary/modules/base set of 7.x);
 * - `local:<vmlinux>[,<modules root>]`: a local build, the modules root being INSTALL_MOD_PATH of
 *   `make modules_install` (it holds lib/modules/<release>/).
 * The guest userland stays Debian trixie's whatever the kernel.
 */
export type KernelSpec =
  | { kind: 'debian'; suite: string; flavour: KernelFlavour; versionGlob?: string }
  | { kind: 'deb'; files: string[] }
  | { kind: 'local'; vmlinux: string; modulesRoot?: string };

/**
 * A kernel spec as the user gave it, for the error when it cannot resolve: where it came from (--kernel, --kernels,
 * a profile's guest.kernel) and its text.
 */
export interface KernelInput {
  field: string;
  text: string;
}

/** Debian's ppc64el flavours: 4 KiB and 64 KiB base pages. */
export type KernelFlavour = 'powerpc64le' | 'powerpc64le-64k';

export const DEFAULT_KERNEL = 'debian:trixie';

const SUITE = /^[a-z][a-z0-9-]{1,40}$/;
const GLOB = /^[A-Za-z0-9.+~*?:-]{1,64}$/;

/** Parses a kernel spec; `field` names where it came from in errors (--kernel, guest.kernel). */
export function parseKernelSpec(text: string, field = '--kernel'): KernelSpec {
  const colon = text.indexOf(':');
  const scheme = colon > 0 ? text.slice(0, colon) : '';
  const rest = text.slice(colon + 1);
  const bad = (why: string): never => {
    throw new InputError(field, text, why);
  };
  switch (scheme) {
    case 'debian': {
      const m = /^([^/@]+)(?:\/(4k|64k))?(?:@(.+))?$/.exec(rest);
      if (!m) return bad('must be debian:<suite>[/4k|/64k][@<version glob>], e.g. debian:experimental/64k');
      const [, suite, pages, versionGlob] = m;
      if (!SUITE.test(suite!)) return bad(`"${suite}" is not a Debian suite name (trixie, trixie-backports, sid, experimental…)`);
      if (versionGlob !== undefined && !GLOB.test(versionGlob)) return bad(`"${versionGlob}" is not a version glob such as 7.2.*`);
      return { kind: 'debian', suite: suite!, flavour: pages === '64k' ? 'powerpc64le-64k' : 'powerpc64le', versionGlob };
    }
    case 'deb': {
      const files = rest.split(',').filter(Boolean);
      if (files.length === 0 || files.some((f) => !f.endsWith('.deb'))) return bad('must be deb:<file.deb>[,<file.deb>…]');
      return { kind: 'deb', files: files.map((f) => absolute(f)) };
    }
    case 'local': {
      const [vmlinux, modulesRoot, ...more] = rest.split(',');
      if (!vmlinux || more.length) return bad('must be local:<vmlinux>[,<modules root (INSTALL_MOD_PATH)>]');
      return { kind: 'local', vmlinux: absolute(vmlinux), ...(modulesRoot ? { modulesRoot: absolute(modulesRoot) } : {}) };
    }
    default:
      return bad('must start with debian:, deb: or local: (e.g. debian:trixie, debian:experimental/64k, local:./vmlinux,./mods)');
  }
}

const sha256Hex = (s: string) => createHash('sha256').update(s).digest('hex');

const absolute = (p: string) => (isAbsolute(p) ? p : resolve(p));

/** The spec written back in its canonical form (what manifests and reports record). */
export function formatKernelSpec(spec: KernelSpec): string {
  switch (spec.kind) {
    case 'debian':
      return `debian:${spec.suite}${spec.flavour === 'powerpc64le-64k' ? '/64k' : ''}${spec.versionGlob ? `@${spec.versionGlob}` : ''}`;
    case 'deb':
      return `deb:${spec.files.join(',')}`;
    case 'local':
      return `local:${spec.vmlinux}${spec.modulesRoot ? `,${spec.modulesRoot}` : ''}`;
  }
}

/**
 * A short name for a kernel, safe in a directory name and a label: trixie, experimental-64k,
 * sid@7.2.x; local builds and .deb sets by a hash of their paths.
 */
export function kernelKey(spec: KernelSpec, hash: (s: string) => string = sha256Hex): string {
  if (spec.kind === 'debian') {
    const glob = spec.versionGlob ? `@${spec.versionGlob.replace(/[*?]/g, 'x').replace(/[^A-Za-z0-9.+~-]/g, '_')}` : '';
    return `${spec.suite}${spec.flavour === 'powerpc64le-64k' ? '-64k' : ''}${glob}`;
  }
  return `${spec.kind}-${hash(formatKernelSpec(spec)).slice(0, 12)}`;
}

/** Whether a Debian version matches a glob (* any run, ? one character). */
export function versionMatches(version: string, glob: string | undefined): boolean {
  if (!glob) return true;
  const re = new RegExp(
    `^${glob
      .replace(/[.+^$()[\]{}|\\]/g, '\\$&')
      .replace(/\*/g, '.*')
      .replace(/\?/g, '.')}$`,
  );
  return re.test(version);
}
