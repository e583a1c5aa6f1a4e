import { existsSync } from 'node:fs';
import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import type { DebPackage } from '../debian/deb-package.js';
import type { PrivateApt } from '../debian/private-apt.js';
import { TcelabError } from '../util/errors.js';
import { runBinary } from '../util/exec.js';
import { withLock } from '../util/lock.js';
import type { Progress } from '../util/progress.js';
import { markUsed } from '../util/mark-used.js';

/** A kernel source tree tcelab can configure and build in (out of tree, with O=): where it is and what it is. */
export interface KernelSourceTree {
  dir: string;
  /** What it is, for reports: "linux-source-6.12 6.12.107-1". */
  describe: string;
  /** What identifies its content, for cache keys of builds made from it. */
  key: string;
}

/** Where unpacked kernel sources live: one dir per source package and version. */
export const sourceCacheDir = (cache: string) => join(cache, 'kernel-source');

/**
 * Debian's kernel source of one exact version (`linux-source-<major.minor>`: the tree with Debian's patches, as a
 * .tar.xz in /usr/src), downloaded and verified through the suite's private apt and unpacked once into the cache.
 * Concurrent callers share one unpack (a lock); a tree is complete when its source.json exists (written last).
 */
export async function debianSourceTree(apt: PrivateApt, pkg: DebPackage, cache: string, progress: Progress): Promise<KernelSourceTree> {
  const base = join(sourceCacheDir(cache), `${pkg.name}_${pkg.version}`);
  const tree: KernelSourceTree = {
    dir: join(base, 'tree'),
    describe: `${pkg.name} ${pkg.version}`,
    key: `${pkg.name}_${pkg.version}_${pkg.sha256}`,
  };
  const done = join(base, 'source.json');
  if (existsSync(done)) {
    await markUsed(base);
    return tree;
  }
  await mkdir(sourceCacheDir(cache), { recursive: true });
  return withLock(`${base}.lock`, `unpack ${tree.describe}`, progress, async () => {
    if (existsSync(done)) return tree;
    const debs = join(sourceCacheDir(cache), 'debs');
    const deb = await progress.step(`download ${tree.describe} (${Math.round(pkg.size / 1e6)} MB)`, () => apt.download(pkg, debs));
    const tmp = `${base}.unpacking-${process.pid}`;
    await rm(tmp, { recursive: true, force: true });
    await mkdir(tmp, { recursive: true });
    await progress.step(`unpack ${tree.describe}`, (update) => unpackSourceDeb(deb, tmp, update));
    await rm(base, { recursive: true, force: true });
    await mkdir(base, { recursive: true });
    await rename(tmp, tree.dir);
    await writeFile(done, `${JSON.stringify({ package: pkg.name, version: pkg.version, sha256: pkg.sha256 }, null, 2)}\n`);
    // The .deb is not needed once unpacked (≈155 MB).
    await rm(deb, { force: true });
    return tree;
  });
}

/** The .tar.xz in a linux-source .deb, unpacked into `into` (its top directory stripped); counts files as it goes. */
function unpackSourceDeb(deb: string, into: string, update: (detail: string) => void): Promise<void> {
  const script =
    'set -o pipefail; m=$(dpkg-deb --fsys-tarfile "$1" | tar -t | grep -E "^\\./usr/src/linux-source-[^/]+\\.tar\\.xz$" | head -1); ' +
    '[ -n "$m" ] || { echo "no linux-source-*.tar.xz in $1" >&2; exit 3; }; ' +
    'dpkg-deb --fsys-tarfile "$1" | tar -xO "$m" | xz -dc -T0 | tar -xv -C "$2" --strip-components=1';
  return new Promise((resolve, reject) => {
    const child = spawn('bash', ['-c', script, 'unpack', deb, into], { stdio: ['ignore', 'pipe', 'pipe'] });
    let files = 0;
    let err = '';
    child.stdout.on('data', (d: Buffer) => {
      for (const c of d) if (c === 10) files++;
      update(`${files} files`);
    });
    child.stderr.on('data', (d: Buffer) => {
      err += d.toString();
    });
    child.on('error', (e) => reject(new TcelabError(`unpack ${deb}`, e.message)));
    child.on('close', (code) =>
      code === 0
        ? resolve()
        : reject(new TcelabError(`unpack ${deb}`, `exited with code ${code}: ${err.trim().split('\n').slice(-4).join('; ')}`)),
    );
  });
}

/** A member of a .deb, read (small files: a config, Module.symvers, one module; a .xz member decompressed). Undefined when no member matches. */
export async function readDebMember(deb: string, member: RegExp): Promise<{ path: string; data: Buffer } | undefined> {
  const list = await runBinary('bash', ['-c', 'set -o pipefail; dpkg-deb --fsys-tarfile "$1" | tar -t', 'list', deb], `list ${deb}`);
  const path = list
    .toString('utf8')
    .split('\n')
    .find((p) => member.test(p));
  if (!path) return undefined;
  const data = await runBinary(
    'bash',
    ['-c', `set -o pipefail; dpkg-deb --fsys-tarfile "$1" | tar -xO "$2"${path.endsWith('.xz') ? ' | xz -dc' : ''}`, 'read', deb, path],
    `read ${path} of ${deb}`,
  );
  return { path, data };
}
