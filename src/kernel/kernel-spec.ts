import { createHash } from 'node:crypto';
import { homedir } from 'node:os';
import { isAbsolute, join, resolve } from 'node:path';
import { InputError } from '../util/errors.js';

/**
 * The guest kernel under test, as a user names it (a profile's guest.kernel, --kernel):
 * - `debian:<suite>[/4k|/64k][@<version glob>]`: the newest ppc64el kernel of a Debian suite on the mirror
 *   (trixie, trixie-backports, sid, experimental…), 4 KiB pages unless /64k, optionally only versions matching
 *   the glob (`debian:sid@7.2.*`);
 * - `deb:<file.deb>[,<file.deb>…]`: local Debian kernel packages (one 6.12-style image package, or the
 *   image/binary/modules/base set of 7.x);
 * - `local:<vmlinux>[,<modules root>]`: a local build, the modules root being INSTALL_MOD_PATH of
 *   `make modules_install` (it holds lib/modules/<release>/);
 * - `tree:<path>[@<ref>][,64k][,kconfig=<CONFIG_X=v|file>…]`: a kernel source tree (a git tree) that tcelab
 *   configures with its lab fragment (kernel-configs/lab.config) and builds: at a commit (`@ref`), or as it stands,
 *   local changes included;
 * - `debian-source:<suite|version>[+patches][/64k][,kconfig=…][,patches=<file|dir>…]`: Debian's linux-source (the
 *   tree with Debian's patches), the newest of a suite (debian-source:trixie) or an exact upstream version from any
 *   suite (debian-source:6.12.107), built the same way; `+patches` applies the repository's kernel-patches/<version>/
 *   series on top, `patches=` a series of the user's (git format-patch files, in order).
 * The guest userland stays Debian trixie's whatever the kernel.
 */
export type KernelSpec =
  | { kind: 'debian'; suite: string; flavour: KernelFlavour; versionGlob?: string }
  | { kind: 'deb'; files: string[] }
  | { kind: 'local'; vmlinux: string; modulesRoot?: string }
  | { kind: 'tree'; path: string; ref?: string; flavour: KernelFlavour; kconfig: string[] }
  | {
      kind: 'debian-source';
      target: DebianSourceTarget;
      flavour: KernelFlavour;
      kconfig: string[];
      /** The repository's own series for the version (kernel-patches/<version>/), applied first. */
      repoPatches: boolean;
      /** The user's patch files or directories of them (absolute), applied in order after it. */
      patches: string[];
    };

/** A spec of a kernel tcelab builds from source. */
export type SourceKernelSpec = Extract<KernelSpec, { kind: 'tree' | 'debian-source' }>;

/** Which Debian source: the newest of a suite, or an exact upstream version (6.12.107) from whichever suite has it. */
export type DebianSourceTarget = { suite: string } | { version: string };

export const isSourceKernel = (spec: KernelSpec): spec is SourceKernelSpec => spec.kind === 'tree' || spec.kind === 'debian-source';

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
/** An upstream kernel version as Debian's linux-source carries it: 6.12.107, 7.3~rc7. */
const UPSTREAM_VERSION = /^\d+\.\d+(\.\d+)?(~rc\d+)?$/;
/** One option of a kconfig addition: CONFIG_X=y|m|n, a number or a quoted string. */
export const KCONFIG_OPTION = /^CONFIG_[A-Za-z0-9_]+=(y|m|n|-?\d+|0x[0-9a-fA-F]+|"[^"]*")$/;

const SOURCE_FORMS = {
  tree: 'tree:<path of a git tree>[@<ref>][,64k][,kconfig=<CONFIG_X=y|file>]…, e.g. tree:~/linux@v6.12 or tree:.',
  'debian-source':
    'debian-source:<suite|version>[+patches][/64k][,kconfig=<CONFIG_X=y|file>]…[,patches=<file|dir>]…, e.g. debian-source:trixie or ' +
    'debian-source:6.12.107+patches',
};

/** The options after a source kernel's first comma: a page size, kconfig additions (an option, or a fragment file), patches. */
function sourceOptions(
  parts: string[],
  bad: (why: string) => never,
  form: string,
  takesPatches = false,
): { flavour?: KernelFlavour; kconfig: string[]; patches: string[] } {
  let flavour: KernelFlavour | undefined;
  const kconfig: string[] = [];
  const patches: string[] = [];
  for (const part of parts) {
    if (part === '64k' || part === '4k') flavour = part === '64k' ? 'powerpc64le-64k' : 'powerpc64le';
    else if (part.startsWith('kconfig=')) kconfig.push(kconfigItem(part.slice('kconfig='.length), bad));
    else if (takesPatches && part.startsWith('patches=') && part.length > 'patches='.length)
      patches.push(absolute(part.slice('patches='.length)));
    else bad(`"${part}" is neither 64k, 4k${takesPatches ? ', patches=…' : ''} nor kconfig=…: must be ${form}`);
  }
  return { flavour, kconfig, patches };
}

/** A kconfig addition: an option line as it is, a file as an absolute path. */
function kconfigItem(item: string, bad: (why: string) => never): string {
  if (/^CONFIG_/.test(item)) {
    if (!KCONFIG_OPTION.test(item)) bad(`"${item}" is not CONFIG_X=y|m|n, a number or a "quoted string"`);
    return item;
  }
  if (!item) bad('kconfig= names nothing: give CONFIG_X=y or a fragment file');
  return absolute(item);
}

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
    case 'tree': {
      const [where = '', ...options] = rest.split(',');
      const at = where.lastIndexOf('@');
      const path = at >= 0 ? where.slice(0, at) : where;
      const ref = at >= 0 ? where.slice(at + 1) : undefined;
      if (!path) return bad(`names no tree: must be ${SOURCE_FORMS.tree}`);
      if (ref !== undefined && !/^[^\s~^:?*[\\]{1,200}$/.test(ref)) return bad(`"${ref}" is not a git ref (a branch, tag or commit)`);
      const { flavour, kconfig } = sourceOptions(options, bad, SOURCE_FORMS.tree);
      return { kind: 'tree', path: absolute(path), ...(ref ? { ref } : {}), flavour: flavour ?? 'powerpc64le', kconfig };
    }
    case 'debian-source': {
      const [head = '', ...options] = rest.split(',');
      const m = /^([^/+]+)(\+patches)?(?:\/(4k|64k))?$/.exec(head);
      if (!m) return bad(`must be ${SOURCE_FORMS['debian-source']}`);
      const [, target, plus, pages] = m;
      const parsed: DebianSourceTarget | undefined = UPSTREAM_VERSION.test(target!)
        ? { version: target! }
        : SUITE.test(target!)
          ? { suite: target! }
          : undefined;
      if (!parsed) return bad(`"${target}" is neither a Debian suite (trixie, sid…) nor a kernel version (6.12.107, 7.2.11)`);
      const opts = sourceOptions(options, bad, SOURCE_FORMS['debian-source'], true);
      const flavour = opts.flavour ?? (pages === '64k' ? 'powerpc64le-64k' : 'powerpc64le');
      return {
        kind: 'debian-source',
        target: parsed,
        flavour,
        kconfig: opts.kconfig,
        repoPatches: plus !== undefined,
        patches: opts.patches,
      };
    }
    default:
      return bad(
        'must start with debian:, deb:, local:, tree: or debian-source: (e.g. debian:trixie, debian:experimental/64k, ' +
          'local:./vmlinux,./mods, tree:~/linux@v6.12, debian-source:trixie)',
      );
  }
}

/** The schemes a kernel spec starts with. */
const SCHEMES = ['debian', 'deb', 'local', 'tree', 'debian-source'];

/**
 * A comma-separated list of kernel specs (--kernels): a part that does not start with a scheme belongs to the spec
 * before it (local:<vmlinux>,<modules root>, tree:<path>,64k,kconfig=…).
 */
export function splitKernelList(text: string): string[] {
  const out: string[] = [];
  const schemeOf = (spec: string) => spec.slice(0, Math.max(0, spec.indexOf(':')));
  for (const part of text.split(',')) {
    const previous = out.at(-1);
    // Only a spec whose syntax has comma parts takes one; after debian:… a part is a spec of its own (and says so if bad).
    if (previous !== undefined && !SCHEMES.includes(schemeOf(part)) && TAKES_COMMA_PARTS.includes(schemeOf(previous)))
      out[out.length - 1] += `,${part}`;
    else if (part) out.push(part);
  }
  return out;
}

/** The schemes whose specs have comma-separated parts: local:<vmlinux>,<root>, deb:<a>,<b>, tree:…,64k, debian-source:…,kconfig=. */
const TAKES_COMMA_PARTS = ['deb', 'local', 'tree', 'debian-source'];

/**
 * A source kernel's spec with the user's kconfig additions (--kconfig-add) appended; any other kernel cannot take
 * them (it is built already), which is bad input naming --kconfig-add.
 */
export function withKconfigAdditions(text: string, additions: string[], field = '--kernel'): string {
  if (additions.length === 0) return text;
  const spec = parseKernelSpec(text, field);
  if (!isSourceKernel(spec)) {
    throw new InputError(
      '--kconfig-add',
      additions.join(' '),
      `the kernel ${text} is built already: kconfig additions apply to kernels tcelab builds from source`,
      'use --kernel tree:<path>[@<ref>] or --kernel debian-source:<suite|version>',
    );
  }
  const bad = (why: string): never => {
    throw new InputError('--kconfig-add', additions.join(' '), why);
  };
  return formatKernelSpec({ ...spec, kconfig: [...spec.kconfig, ...additions.map((a) => kconfigItem(a, bad))] });
}

const sha256Hex = (s: string) => createHash('sha256').update(s).digest('hex');

/** An absolute path; ~ is the home directory (a spec in a profile or an env var is not expanded by a shell). */
const absolute = (p: string) => {
  const home = p === '~' || p.startsWith('~/') ? join(homedir(), p.slice(1)) : p;
  return isAbsolute(home) ? home : resolve(home);
};

const kconfigText = (items: string[]) => items.map((k) => `,kconfig=${k}`).join('');

/** The spec written back in its canonical form (what manifests and reports record). */
export function formatKernelSpec(spec: KernelSpec): string {
  switch (spec.kind) {
    case 'debian':
      return `debian:${spec.suite}${spec.flavour === 'powerpc64le-64k' ? '/64k' : ''}${spec.versionGlob ? `@${spec.versionGlob}` : ''}`;
    case 'deb':
      return `deb:${spec.files.join(',')}`;
    case 'local':
      return `local:${spec.vmlinux}${spec.modulesRoot ? `,${spec.modulesRoot}` : ''}`;
    case 'tree':
      return `tree:${spec.path}${spec.ref ? `@${spec.ref}` : ''}${spec.flavour === 'powerpc64le-64k' ? ',64k' : ''}${kconfigText(spec.kconfig)}`;
    case 'debian-source': {
      const target = 'suite' in spec.target ? spec.target.suite : spec.target.version;
      const head = `${target}${spec.repoPatches ? '+patches' : ''}${spec.flavour === 'powerpc64le-64k' ? '/64k' : ''}`;
      return `debian-source:${head}${kconfigText(spec.kconfig)}${spec.patches.map((p) => `,patches=${p}`).join('')}`;
    }
  }
}

/**
 * A short name for a kernel, safe in a directory name and a label: trixie, experimental-64k, sid@7.2.x,
 * src-trixie, src-6.12.107-64k (with a hash of its kconfig additions when it has some); trees, local builds and
 * .deb sets by a hash of their spec.
 */
export function kernelKey(spec: KernelSpec, hash: (s: string) => string = sha256Hex): string {
  const pages = spec.kind !== 'deb' && spec.kind !== 'local' && spec.flavour === 'powerpc64le-64k' ? '-64k' : '';
  if (spec.kind === 'debian') {
    const glob = spec.versionGlob ? `@${spec.versionGlob.replace(/[*?]/g, 'x').replace(/[^A-Za-z0-9.+~-]/g, '_')}` : '';
    return `${spec.suite}${pages}${glob}`;
  }
  if (spec.kind === 'debian-source') {
    const target = 'suite' in spec.target ? spec.target.suite : spec.target.version.replace(/~/g, '_');
    const patched = spec.repoPatches ? '+patches' : '';
    const user = spec.patches.length ? `-p${hash(spec.patches.join('\n')).slice(0, 8)}` : '';
    return `src-${target}${patched}${pages}${spec.kconfig.length ? `-k${hash(spec.kconfig.join('\n')).slice(0, 8)}` : ''}${user}`;
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
