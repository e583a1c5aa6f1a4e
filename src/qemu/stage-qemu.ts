import { chmod, mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { libraryClosure } from '../image/package-resolution.js';
import { hostDebianMirror } from '../debian/apt-sources.js';
import { debFileName, type DebPackage } from '../debian/deb-package.js';
import { aptFailureText, PrivateApt } from '../debian/private-apt.js';
import { run } from '../util/exec.js';
import { InputError, TcelabError } from '../util/errors.js';
import { cacheDir } from '../util/paths.js';
import { withLock } from '../util/lock.js';
import { type Progress, StderrProgress, silentProgress } from '../util/progress.js';
import type { Profile } from './profile.js';

/**
 * A host QEMU from a Debian suite, as an input like the kernel: `--qemu debian:<suite>` resolves
 * qemu-system-ppc and the shared libraries it needs (libc included) for this machine's architecture in that
 * suite's index, downloads and verifies each against the index, and unpacks them under the cache. A wrapper
 * runs that QEMU with the suite's own dynamic loader and libraries, so nothing is installed on the host and a
 * newer QEMU runs on an older distribution (measured: trixie's 10.0.13 on a bookworm host, where it restores
 * TCG snapshots faithfully; 7.2 does not). The versions are resolved, never written down, and recorded in
 * the staged dir's manifest.
 */
export const QEMU_SPEC_PATTERN = /^debian:([a-z][a-z0-9-]{1,40})$/;

/** A --qemu value as the binary to run: a `debian:<suite>` spec is staged (said on stderr), anything else is as given. */
export async function resolveQemuInput(value: string, field: string): Promise<string> {
  if (!value.startsWith('debian:')) return value;
  if (!QEMU_SPEC_PATTERN.test(value)) throw new InputError(field, value, 'must be debian:<suite>, e.g. debian:trixie');
  return (await stageDebianQemu(value, new StderrProgress())).binary;
}

/** The packages a pseries QEMU needs beyond its libraries: the binary, its firmware and its modules. */
const QEMU_PACKAGES = ['qemu-system-ppc', 'qemu-system-data', 'qemu-system-common'];

/** Debian's name for this machine's architecture. */
function debianArch(): string {
  const arch = ({ x64: 'amd64', arm64: 'arm64', ppc64: 'ppc64el', s390x: 's390x' } as Record<string, string>)[process.arch];
  if (!arch) throw new TcelabError('stage a Debian QEMU', `no Debian architecture for ${process.arch}`);
  return arch;
}

export interface StagedQemu {
  /** The wrapper to run: takes QEMU's arguments. */
  binary: string;
  suite: string;
  version: string;
  packages: Array<Pick<DebPackage, 'name' | 'version' | 'sha256'>>;
}

/**
 * A profile whose qemu.binary is a `debian:<suite>` spec, with the staged wrapper in its place (staged now if it
 * is not yet, with progress); any other profile as it is. Only for a QEMU this machine runs: a spec cannot be
 * staged into a guest.
 */
export async function withStagedQemu(profile: Profile, progress: Progress, local = true): Promise<Profile> {
  if (!QEMU_SPEC_PATTERN.test(profile.qemu.binary)) return profile;
  if (!local)
    throw new InputError(
      `profile ${profile.name}`,
      'qemu.binary',
      `${profile.qemu.binary} is staged on this machine: a QEMU in a guest is the guest's own`,
    );
  const staged = await stageDebianQemu(profile.qemu.binary, progress);
  return { ...profile, qemu: { ...profile.qemu, binary: staged.binary } };
}

/**
 * The wrapper of a `debian:<suite>` spec, staged (resolved, downloaded, verified) if it is not yet. Once staged,
 * a suite's QEMU stays what it was (a lab's inputs do not move under it); `refresh` resolves the suite again and
 * stages what it has now (a distro update).
 */
export async function stageDebianQemu(spec: string, progress: Progress = silentProgress, refresh = false): Promise<StagedQemu> {
  const m = QEMU_SPEC_PATTERN.exec(spec);
  if (!m) throw new InputError('--qemu', spec, 'must be a path, a name on PATH, or debian:<suite> (e.g. debian:trixie)');
  const suite = m[1]!;
  const base = join(cacheDir(), 'qemu');
  const current = join(base, `${suite}.json`);
  const before = refresh ? undefined : await readStaged(current);
  if (before) return before;
  await mkdir(base, { recursive: true });
  // Labs that start together (a suite of tests, a matrix) would otherwise stage one suite side by side, each
  // replacing the directory the other's QEMU runs from.
  return withLock(join(base, `.staging-${suite}.lock`), `stage QEMU from Debian ${suite}`, progress, async () => {
    const meanwhile = refresh ? undefined : await readStaged(current);
    return meanwhile ?? stageNow(spec, suite, base, current, progress);
  });
}

/** A staged QEMU's record (a suite's current one, or a staged dir's manifest), if it is there and so is its wrapper. */
export async function readStaged(file: string): Promise<StagedQemu | undefined> {
  if (!existsSync(file)) return undefined;
  const known = JSON.parse(await readFile(file, 'utf8')) as StagedQemu;
  return existsSync(known.binary) ? known : undefined;
}

async function stageNow(spec: string, suite: string, base: string, current: string, progress: Progress): Promise<StagedQemu> {
  const arch = debianArch();
  const apt = new PrivateApt(join(base, `apt-${suite}-${arch}`), hostDebianMirror(), suite, arch);
  await progress.step(`update Debian ${suite} ${arch} package lists (private apt config)`, async () => {
    try {
      await apt.update();
    } catch (err) {
      // A suite the mirror does not have is the input's fault, not the mirror's.
      if (/does not have a Release file|404/.test(aptFailureText(err)))
        throw new InputError('--qemu', spec, `the Debian mirror has no suite ${suite} (e.g. trixie, sid, experimental)`);
      throw err;
    }
  });
  const packages = await progress.step(`resolve QEMU and its libraries in Debian ${suite}`, () => libraryClosure(apt, QEMU_PACKAGES));
  const qemu = packages.find((p) => p.name === 'qemu-system-ppc')!;
  const debDir = join(base, 'debs');
  await progress.step(`download and verify ${packages.length} packages`, async (update) => {
    for (const [i, p] of packages.entries()) {
      update(`${i + 1}/${packages.length} ${p.name} ${p.version}`, i / packages.length);
      await apt.download(p, debDir);
    }
  });
  const dir = join(base, `${suite}@${qemu.version.replace(/[^A-Za-z0-9.+~-]/g, '_')}`);
  // Already staged (a refresh that found the same version): labs may be running from it; it stays.
  const same = await readStaged(join(dir, 'manifest.json'));
  if (same?.version === qemu.version) {
    progress.info(`QEMU from Debian ${suite}: ${qemu.version}, staged already (${dir})`);
    await writeFile(current, `${JSON.stringify(same, null, 2)}\n`);
    return same;
  }
  const tmp = `${dir}.staging-${process.pid}`;
  await rm(tmp, { recursive: true, force: true });
  await mkdir(join(tmp, 'root'), { recursive: true });
  await progress.step('unpack', async () => {
    for (const p of packages) await run('dpkg-deb', ['-x', join(debDir, debFileName(p)), join(tmp, 'root')], { what: `unpack ${p.name}` });
  });
  const binary = join(dir, 'qemu-system-ppc64');
  await writeFile(join(tmp, 'qemu-system-ppc64'), wrapperScript(dir, arch));
  await chmod(join(tmp, 'qemu-system-ppc64'), 0o755);
  await rm(dir, { recursive: true, force: true });
  await rename(tmp, dir);
  const staged: StagedQemu = {
    binary,
    suite,
    version: qemu.version,
    packages: packages.map(({ name, version, sha256 }) => ({ name, version, sha256 })),
  };
  // The wrapper must run here: a QEMU that cannot start is refused now, not at the first lab.
  const v = await run(binary, ['--version'], { what: `run the staged QEMU (${suite} ${qemu.version})` });
  progress.info(`QEMU from Debian ${suite}: ${v.stdout.split('\n')[0]} (${packages.length} packages, in ${dir})`);
  await writeFile(join(dir, 'manifest.json'), `${JSON.stringify(staged, null, 2)}\n`);
  await writeFile(current, `${JSON.stringify(staged, null, 2)}\n`);
  return staged;
}

/**
 * Runs the staged QEMU with the suite's loader and libraries, its firmware (-L) and its modules; `exec` keeps
 * the pid, so the lab's QEMU pid, cgroup and parent-death signal are the QEMU's own.
 */
function wrapperScript(dir: string, arch: string): string {
  const triplet = { amd64: 'x86_64-linux-gnu', arm64: 'aarch64-linux-gnu', ppc64el: 'powerpc64le-linux-gnu', s390x: 's390x-linux-gnu' }[
    arch
  ]!;
  const loader = {
    amd64: 'ld-linux-x86-64.so.2',
    arm64: 'ld-linux-aarch64.so.1',
    ppc64el: 'ld64.so.2',
    s390x: 'ld64.so.1',
  }[arch]!;
  const root = join(dir, 'root');
  return [
    '#!/bin/sh',
    `# QEMU staged by tcelab from Debian packages (see manifest.json): run with their own loader and libraries.`,
    `R='${root}'`,
    `QEMU_MODULE_DIR="$R/usr/lib/${triplet}/qemu" export QEMU_MODULE_DIR`,
    `exec "$R/usr/lib/${triplet}/${loader}" --library-path "$R/usr/lib/${triplet}:$R/lib/${triplet}" ` +
      `"$R/usr/bin/qemu-system-ppc64" -L "$R/usr/share/qemu" "$@"`,
    '',
  ].join('\n');
}
