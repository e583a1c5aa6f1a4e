import { existsSync } from 'node:fs';
import { hostDebianMirror } from '../debian/apt-sources.js';
import type { DebPackage } from '../debian/deb-package.js';
import { compareDebianVersions } from '../debian/debian-version.js';
import { firstNotServed, MIRROR_HINT, suiteAptRoot, USERLAND_ARCH, USERLAND_SUITE } from '../debian/guest-suite.js';
import { mirrorSuites } from '../debian/mirror-suites.js';
import { PrivateApt } from '../debian/private-apt.js';
import type { KernelInput, SourceKernelSpec } from '../kernel/kernel-spec.js';
import { kernelSuiteApt, updatedSuiteApt } from '../kernel/kernel-suite-apt.js';
import { InputError, TcelabError } from '../util/errors.js';
import type { Progress } from '../util/progress.js';
import { debianSourceTree, type KernelSourceTree } from './kernel-source.js';

type DebianSourceSpec = Extract<SourceKernelSpec, { kind: 'debian-source' }>;

/** Debian's kernel source packages: linux-source-<major.minor> (the unversioned linux-source is a meta package). */
const SOURCE_PACKAGE = /^linux-source-\d+\.\d+$/;

/** The upstream version of a linux-source package's Debian version: 6.12.107-1 → 6.12.107, 7.2.11-1~bpo13+1 → 7.2.11. */
export const upstreamVersion = (debianVersion: string) => debianVersion.replace(/-[^-]*$/, '');

/**
 * Debian's kernel source the spec names, unpacked into the cache: the newest linux-source-* of a suite's index that
 * the mirror serves (debian-source:trixie), or the one of exactly an upstream version from the first suite that has it
 * (debian-source:6.12.107: the userland's suite first, then every suite the mirror has, oldest first).
 */
export async function debianSource(
  spec: DebianSourceSpec,
  input: KernelInput,
  cache: string,
  progress: Progress,
): Promise<KernelSourceTree & { upstream: string }> {
  const { apt, pkg } =
    'suite' in spec.target
      ? await newestOfSuite(spec.target.suite, input, cache, progress)
      : await exactVersion(spec.target.version, input, cache, progress);
  progress.info(`kernel source: ${pkg.name} ${pkg.version} (Debian ${apt.suite})`);
  return { ...(await debianSourceTree(apt, pkg, cache, progress)), upstream: upstreamVersion(pkg.version) };
}

const sources = (apt: PrivateApt) =>
  apt.candidates(SOURCE_PACKAGE).then((all) => all.sort((a, b) => compareDebianVersions(b.version, a.version)));

async function newestOfSuite(
  suite: string,
  input: KernelInput,
  cache: string,
  progress: Progress,
): Promise<{ apt: PrivateApt; pkg: DebPackage }> {
  const apt = await kernelSuiteApt(cache, suite, input, progress);
  const all = await sources(apt);
  if (all.length === 0) {
    throw new InputError(
      input.field,
      input.text,
      `Debian ${suite}'s index has no linux-source-<version> package`,
      'debian-source: takes a suite that ships the kernel source (trixie, trixie-backports, sid, experimental…) or a version (6.12.107)',
    );
  }
  // The mirror's index can be ahead of its pool: the newest it serves.
  for (const pkg of all) {
    if (!(await firstNotServed(apt.mirror, [pkg]))) return { apt, pkg };
    progress.info(`the mirror lists ${pkg.name} ${pkg.version} but does not serve it; trying the next older`);
  }
  throw new TcelabError(
    `resolve the kernel source of Debian ${suite}`,
    `the mirror lists ${all.map((p) => `${p.name} ${p.version}`).join(', ')} but serves none`,
    MIRROR_HINT,
  );
}

async function exactVersion(
  version: string,
  input: KernelInput,
  cache: string,
  progress: Progress,
): Promise<{ apt: PrivateApt; pkg: DebPackage }> {
  const mirror = hostDebianMirror();
  const has = await mirrorSuites(mirror, USERLAND_ARCH);
  const suites = [USERLAND_SUITE, ...(has.reached ? has.suites.filter((s) => s !== USERLAND_SUITE) : [])];
  const seen = new Map<string, string[]>();
  const series = /^(\d+\.\d+)/.exec(version)?.[1];
  const wanted = (p: DebPackage) => p.name === `linux-source-${series}` && upstreamVersion(p.version) === version;
  for (const suite of suites) {
    // Lists already in the cache are read first; a suite is asked of the mirror only when they lack the version.
    const cached = new PrivateApt(suiteAptRoot(cache, suite), mirror, suite, USERLAND_ARCH);
    const inCache = existsSync(suiteAptRoot(cache, suite)) ? await sources(cached).catch(() => [] as DebPackage[]) : [];
    let found = inCache.find(wanted);
    let apt = cached;
    if (!found) {
      apt = await updatedSuiteApt(cache, suite, progress, mirror).catch(() => cached);
      const all = await sources(apt).catch(() => [] as DebPackage[]);
      seen.set(
        suite,
        all.map((p) => upstreamVersion(p.version)),
      );
      found = all.find(wanted);
    }
    if (found && !(await firstNotServed(mirror, [found]))) return { apt, pkg: found };
  }
  const listed = [...seen].filter(([, v]) => v.length).map(([suite, v]) => `${suite}: ${[...new Set(v)].join(', ')}`);
  throw new InputError(
    input.field,
    input.text,
    `the Debian mirror ${mirror} serves no linux-source of version ${version}`,
    listed.length
      ? `the versions it has: ${listed.join('; ')}`
      : `it lists no linux-source in ${suites.join(', ')}${has.reached ? '' : ` (its suites could not be listed: ${has.why})`}`,
  );
}
