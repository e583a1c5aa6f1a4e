import { statSync } from 'node:fs';
import { join } from 'node:path';
import type { MirrorSuites } from '../debian/mirror-suites.js';
import { InputError } from '../util/errors.js';
import type { KernelInput, KernelSpec } from './kernel-spec.js';

/**
 * Why a kernel spec cannot resolve, told as bad input (an InputError: exit 2) that names where the spec came from
 * and its text: a file of a local: or deb: spec that is not there, a Debian suite the mirror does not have. A
 * mirror that cannot be reached is no verdict on the spec: that stays the mirror's failure (exit 1).
 */

/** A path a spec names: what it is to the user, and whether it must be a file or a directory. */
interface NamedPath {
  path: string;
  what: string;
  type: 'file' | 'directory' | 'file or directory';
}

/** A source kernel's kconfig additions that are files (the others are options). */
const fragmentFiles = (kconfig: string[]): NamedPath[] =>
  kconfig.filter((k) => !k.startsWith('CONFIG_')).map((path) => ({ path, what: 'a kconfig fragment', type: 'file' }));

/** The paths each kind of spec names, in the order a user would look for them; a Debian suite names none. */
const NAMED_PATHS: { [K in KernelSpec['kind']]: (spec: Extract<KernelSpec, { kind: K }>) => NamedPath[] } = {
  debian: () => [],
  tree: (spec) => [{ path: spec.path, what: 'the kernel source tree', type: 'directory' }, ...fragmentFiles(spec.kconfig)],
  'debian-source': (spec) => [
    ...fragmentFiles(spec.kconfig),
    ...spec.patches.map((path) => ({ path, what: 'a patch or a directory of patches', type: 'file or directory' as const })),
  ],
  deb: (spec) => spec.files.map((path) => ({ path, what: 'a kernel package', type: 'file' })),
  local: (spec) => [
    { path: spec.vmlinux, what: 'the vmlinux', type: 'file' },
    ...(spec.modulesRoot
      ? [
          { path: spec.modulesRoot, what: 'the modules root', type: 'directory' as const },
          { path: join(spec.modulesRoot, 'lib/modules'), what: "the modules root's lib/modules", type: 'directory' as const },
        ]
      : []),
  ],
};

/** What each kind of spec names, said when one of its paths is missing. */
const PATHS_HINT: Record<KernelSpec['kind'], string> = {
  debian: '',
  tree:
    'tree:<path>[@<ref>] names a git tree of the kernel source on this machine; kconfig=<file> names a fragment of ' + 'CONFIG_X=… lines',
  'debian-source':
    'kconfig=<file> names a fragment of CONFIG_X=… lines on this machine; patches=<file|dir> a git format-patch file or a directory of them',
  deb: 'deb:<file.deb>[,<file.deb>…] names Debian kernel packages on this machine',
  local:
    'local:<vmlinux>[,<modules root>] names the vmlinux of a kernel build and, optionally, the INSTALL_MOD_PATH ' +
    'of its `make modules_install` (it holds lib/modules/<release>/)',
};

/** Every path the spec names must be there, and be a file or a directory as it should: checked before anything is built. */
export function checkKernelFiles(spec: KernelSpec, input: KernelInput): void {
  const paths = (NAMED_PATHS[spec.kind] as (s: KernelSpec) => NamedPath[])(spec);
  for (const p of paths) {
    const stat = statSync(p.path, { throwIfNoEntry: false });
    const why = !stat
      ? `${p.path} does not exist (${p.what})`
      : (p.type === 'file' ? stat.isFile() : p.type === 'directory' ? stat.isDirectory() : stat.isFile() || stat.isDirectory())
        ? undefined
        : `${p.path} is not a ${p.type} (${p.what})`;
    if (why) throw new InputError(input.field, input.text, why, PATHS_HINT[spec.kind]);
  }
}

/** What to say of the suites a mirror has, for the hint of a suite it lacks. */
function suitesHint(has: MirrorSuites, arch: string): string {
  if (!has.reached)
    return `check the suite name (trixie, trixie-backports, sid, experimental…); the mirror's suites could not be listed: ${has.why}`;
  return `the suites the mirror has ${arch} kernels in: ${has.suites.join(', ')}`;
}

/**
 * A suite the mirror answered it does not have (apt: no Release file): bad input, with the suites it has. When
 * the mirror has none of Debian's suites either, it is the mirror that is wrong, not the spec: apt's own failure
 * (aptError) stands, with its hint to check the mirror.
 */
export function missingSuiteError(
  suite: string,
  input: KernelInput,
  where: { mirror: string; arch: string; has: MirrorSuites },
  aptError: unknown,
): unknown {
  if (where.has.reached && where.has.suites.length === 0) return aptError;
  return new InputError(
    input.field,
    input.text,
    `the Debian mirror ${where.mirror} has no suite "${suite}" (it answered that it has no Release file for it)`,
    suitesHint(where.has, where.arch),
  );
}

/** A suite the mirror has, but not for the guest's architecture: bad input, with the suites it has for it. */
export function suiteWithoutArchError(
  suite: string,
  input: KernelInput,
  where: { mirror: string; arch: string; has: MirrorSuites; architectures: string },
): InputError {
  return new InputError(
    input.field,
    input.text,
    `Debian ${suite} on ${where.mirror} has no ${where.arch} packages (its Release lists ${where.architectures || 'no architectures'})`,
    suitesHint(where.has, where.arch),
  );
}
