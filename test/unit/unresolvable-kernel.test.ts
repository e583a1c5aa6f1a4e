import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { mirrorSuites, parseReleaseHead, type ReleaseReader, readReleaseHead } from '../../src/debian/mirror-suites.js';
import { isMidSyncError, isMissingReleaseError } from '../../src/debian/private-apt.js';
import { parsePackagesIndex } from '../../src/debian/deb-package.js';
import { resolveDebianKernel } from '../../src/kernel/debian-kernel.js';
import { parseKernelSpec } from '../../src/kernel/kernel-spec.js';
import { checkKernelFiles, missingSuiteError, suiteWithoutArchError } from '../../src/kernel/unresolvable-kernel.js';
import { InputError, TcelabError } from '../../src/util/errors.js';
import { packageRoot } from '../../src/util/paths.js';
import { scratchDir } from '../helpers/scratch.js';

/** The heads of the mirror's Release files (2026-12), by dists/ name: what the mirror answered for each. */
const releases = join(packageRoot, 'test/fixtures/debian-release');
const mirror: Record<string, string> = Object.fromEntries(
  readdirSync(releases).map((f) => [f.replace(/\.Release$/, ''), readFileSync(join(releases, f), 'utf8')]),
);
const realMirror: ReleaseReader = async (_m, dist) => mirror[dist];

const thrown = (f: () => unknown): unknown => {
  try {
    f();
  } catch (e) {
    return e;
  }
  return undefined;
};

describe("a Debian mirror's suites", () => {
  it("reads what a Release file's head says it is", () => {
    expect(parseReleaseHead(mirror.experimental!)).toEqual({
      suite: 'experimental',
      codename: 'rc-buggy',
      architectures: ['all', 'amd64', 'arm64', 'armhf', 'i386', 'loong64', 'ppc64el', 'riscv64', 's390x'],
    });
    expect(parseReleaseHead('Origin: x\n')).toEqual({ suite: undefined, codename: undefined, architectures: [] });
  });

  it('names the suites the mirror has for an architecture, oldest first, by the names a user types', async () => {
    // oldoldstable (bullseye) has no ppc64el on this mirror, and no backports; testing (forky) has no backports yet.
    expect(await mirrorSuites('http://m/debian', 'ppc64el', realMirror)).toEqual({
      reached: true,
      suites: ['bookworm', 'bookworm-backports', 'trixie', 'trixie-backports', 'forky', 'sid', 'experimental'],
    });
    expect(await mirrorSuites('http://m/debian', 'amd64', realMirror)).toMatchObject({ suites: expect.arrayContaining(['bullseye']) });
  });

  it('reads a file: mirror from the file system', async () => {
    const root = scratchDir('mirror');
    for (const dist of ['stable', 'unstable', 'trixie-backports']) {
      mkdirSync(join(root, 'dists', dist), { recursive: true });
      writeFileSync(join(root, 'dists', dist, 'Release'), mirror[dist]!);
    }
    expect(await readReleaseHead(`file://${root}`, 'stable')).toBe(mirror.stable);
    expect(await readReleaseHead(`file://${root}`, 'testing')).toBeUndefined();
    expect(await mirrorSuites(`file://${root}`, 'ppc64el')).toEqual({ reached: true, suites: ['trixie', 'trixie-backports', 'sid'] });
  });

  it('says a mirror that answers for none of them has none, and one it could not ask, why', async () => {
    expect(await mirrorSuites('http://m/debian', 'ppc64el', async () => undefined)).toEqual({ reached: true, suites: [] });
    const unreachable: ReleaseReader = async () => {
      throw new Error('fetch failed');
    };
    expect(await mirrorSuites('http://m/debian', 'ppc64el', unreachable)).toEqual({ reached: false, why: 'fetch failed' });
  });
});

describe('a kernel spec that cannot resolve is bad input, naming where it came from', () => {
  const input = { field: '--kernel', text: 'debian:nosuchsuite' };
  const apt = (line: string) => new TcelabError('apt-get update for Debian nosuchsuite ppc64el', `exited with code 100:\n    E: ${line}`);
  const noRelease = apt("The repository 'http://deb.debian.org/debian nosuchsuite Release' does not have a Release file.");

  it("tells apt's answer that the mirror has no such suite from every other failure", () => {
    expect(isMissingReleaseError(noRelease)).toBe(true);
    expect(isMissingReleaseError(apt("Failed to fetch http://m/debian/dists/trixie/InRelease  Could not resolve 'm'"))).toBe(false);
    expect(isMissingReleaseError(apt('Failed to fetch http://m/…/Packages.xz  Hash Sum mismatch'))).toBe(false);
    expect(isMidSyncError(noRelease)).toBe(false);
  });

  it('a suite the mirror lacks names the suites it has', async () => {
    const has = await mirrorSuites('http://m/debian', 'ppc64el', realMirror);
    const err = missingSuiteError('nosuchsuite', input, { mirror: 'http://m/debian', arch: 'ppc64el', has }, noRelease);
    expect(err).toBeInstanceOf(InputError);
    expect((err as InputError).message).toBe(
      '--kernel: debian:nosuchsuite: the Debian mirror http://m/debian has no suite "nosuchsuite" (it answered that it has no Release file for it)',
    );
    expect((err as InputError).hint).toBe(
      'the suites the mirror has ppc64el kernels in: bookworm, bookworm-backports, trixie, trixie-backports, forky, sid, experimental',
    );
  });

  it('a mirror with none of Debian suites is the mirror at fault: apt failure stands', () => {
    const where = { mirror: 'file:/nowhere', arch: 'ppc64el', has: { reached: true as const, suites: [] } };
    expect(missingSuiteError('nosuchsuite', input, where, noRelease)).toBe(noRelease);
  });

  it("apt's 404 is bad input even when the suites cannot be listed, saying why they are not", () => {
    const where = { mirror: 'http://m/debian', arch: 'ppc64el', has: { reached: false as const, why: 'fetch failed' } };
    const err = missingSuiteError('nosuchsuite', input, where, noRelease) as InputError;
    expect(err).toBeInstanceOf(InputError);
    expect(err.hint).toMatch(/the mirror's suites could not be listed: fetch failed/);
  });

  it('a suite without the guest architecture names the suites that have it', () => {
    const has = { reached: true as const, suites: ['trixie', 'sid'] };
    const err = suiteWithoutArchError(
      'bullseye',
      { field: '--kernels', text: 'debian:bullseye' },
      {
        mirror: 'http://m/debian',
        arch: 'ppc64el',
        has,
        architectures: 'all amd64',
      },
    );
    expect(err).toBeInstanceOf(InputError);
    expect(err.describe()).toBe(
      '--kernels: debian:bullseye: Debian bullseye on http://m/debian has no ppc64el packages (its Release lists all amd64)\n' +
        '  what to do: the suites the mirror has ppc64el kernels in: trixie, sid',
    );
  });

  it('a suite without the kernel or version asked for is bad input, named as given', () => {
    const index = parsePackagesIndex(readFileSync(join(packageRoot, 'test/fixtures/debian-index/trixie.Packages'), 'utf8'));
    const err = thrown(() =>
      resolveDebianKernel(
        index,
        { suite: 'trixie', flavour: 'powerpc64le', versionGlob: '9.*' },
        { field: '--kernels', text: 'debian:trixie@9.*' },
      ),
    );
    expect(err).toBeInstanceOf(InputError);
    expect((err as InputError).message).toMatch(/^--kernels: debian:trixie@9\.\*: no version matches 9\.\* \(the mirror has 6\.12\./);
    expect(thrown(() => resolveDebianKernel([], { suite: 'sid', flavour: 'powerpc64le-64k' }))).toMatchObject({
      message: "--kernel: debian:sid/64k: Debian sid's index has no linux-image-<abi>-powerpc64le-64k package",
    });
  });

  it('a local build or .deb names the path that is missing, or is not what it should be', () => {
    const dir = scratchDir('kernel-files');
    const vmlinux = join(dir, 'vmlinux');
    writeFileSync(vmlinux, 'ELF');
    const mods = join(dir, 'mods');
    const why = (text: string) => {
      const err = thrown(() => checkKernelFiles(parseKernelSpec(text), { field: '--kernel', text }));
      if (err === undefined) return undefined;
      expect(err, text).toBeInstanceOf(InputError);
      expect((err as InputError).message.startsWith(`--kernel: ${text}: `), text).toBe(true);
      return (err as InputError).why;
    };
    expect(why(`local:${dir}/nope`)).toBe(`${dir}/nope does not exist (the vmlinux)`);
    expect(why(`local:${dir}`)).toBe(`${dir} is not a file (the vmlinux)`);
    expect(why(`local:${vmlinux},${mods}`)).toBe(`${mods} does not exist (the modules root)`);
    mkdirSync(mods);
    expect(why(`local:${vmlinux},${mods}`)).toBe(`${mods}/lib/modules does not exist (the modules root's lib/modules)`);
    mkdirSync(join(mods, 'lib/modules'), { recursive: true });
    expect(why(`local:${vmlinux},${mods}`)).toBeUndefined();
    expect(why(`local:${vmlinux}`)).toBeUndefined();
    writeFileSync(join(dir, 'a.deb'), '');
    expect(why(`deb:${dir}/a.deb,${dir}/b.deb`)).toBe(`${dir}/b.deb does not exist (a kernel package)`);
    expect(why('debian:nosuchsuite')).toBeUndefined();
  });
});
