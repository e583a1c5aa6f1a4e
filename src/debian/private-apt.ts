import { mkdir, writeFile, readdir, readFile, rename, rm } from 'node:fs/promises';
import { createReadStream, existsSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { run } from '../util/exec.js';
import { TcelabError } from '../util/errors.js';
import { compareDebianVersions } from './debian-version.js';
import { type DebPackage, debFileName, parsePackagesIndex } from './deb-package.js';

/**
 * apt for the guest's architecture with its own sources list, state and cache
 * under tcelab's cache dir. The host's own apt configuration (proxies, validity
 * settings) is still read, but its sources, package lists, dpkg status and
 * architecture are never touched.
 */
export class PrivateApt {
  /**
   * The dists/ name the lists came from: the codename, or its suite alias
   * (stable) when the mirror's codename index was caught mid-sync.
   */
  dist: string;

  constructor(
    readonly root: string,
    readonly mirror: string,
    readonly suite = 'trixie',
    readonly arch = 'ppc64el',
  ) {
    this.dist = suite;
  }

  private get options(): string[] {
    const r = this.root;
    return [
      '-o',
      `Dir::Etc::SourceList=${join(r, 'sources.list')}`,
      '-o',
      `Dir::Etc::SourceParts=${join(r, 'sources.list.d')}`,
      '-o',
      `Dir::State=${join(r, 'state')}`,
      '-o',
      `Dir::State::status=${join(r, 'state', 'status')}`,
      '-o',
      `Dir::Cache=${join(r, 'cache')}`,
      '-o',
      `Dir::Cache::pkgcache=${join(r, 'cache', 'pkgcache.bin')}`,
      '-o',
      `Dir::Cache::srcpkgcache=${join(r, 'cache', 'srcpkgcache.bin')}`,
      '-o',
      `APT::Architecture=${this.arch}`,
      '-o',
      `APT::Architectures::=${this.arch}`,
      '-o',
      'APT::Sandbox::User=root',
      '-o',
      'Debug::NoLocking=1',
    ];
  }

  async update(): Promise<void> {
    await mkdir(join(this.root, 'state', 'lists', 'partial'), { recursive: true });
    await mkdir(join(this.root, 'cache', 'archives', 'partial'), { recursive: true });
    await mkdir(join(this.root, 'sources.list.d'), { recursive: true });
    await writeFile(join(this.root, 'state', 'status'), '');
    try {
      await this.updateFrom(this.suite);
      this.dist = this.suite;
    } catch (err) {
      // A mirror caught between two syncs serves an index that does not match its
      // signed InRelease (apt: "File has unexpected size", "Hash Sum mismatch").
      // The same release is also published under its suite alias (trixie → stable),
      // whose InRelease may match what the mirror has: apt verifies it just the same.
      const alias = isMidSyncError(err) ? await this.suiteAlias(this.suite) : undefined;
      if (!alias || alias === this.suite) throw err;
      try {
        await this.updateFrom(alias);
      } catch {
        throw err;
      }
      const codename = await this.releaseField(alias, 'Codename');
      if (codename !== this.suite) {
        throw new TcelabError(
          `apt-get update for Debian ${this.suite}`,
          `the mirror's ${this.suite} index is inconsistent (mid-sync) and its ${alias} alias is ${codename ?? 'unknown'}, not ${this.suite}`,
          'run the build again later, or set TCELAB_DEBIAN_MIRROR to another mirror',
        );
      }
      this.dist = alias;
    }
  }

  private async updateFrom(dist: string): Promise<void> {
    await writeFile(
      join(this.root, 'sources.list'),
      `deb [arch=${this.arch} signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] ${this.mirror} ${dist} main\n`,
    );
    await run('apt-get', [...this.options, '-q', 'update'], {
      what: `apt-get update for Debian ${dist} ${this.arch}`,
      hint: 'check that the Debian mirror is reachable; set TCELAB_DEBIAN_MIRROR to use another one',
    });
  }

  /**
   * A field of the InRelease (or, from a mirror that signs no InRelease, the Release) apt fetched for `dist` (in
   * lists/ or, after a failed update, lists/partial/). Undefined when apt fetched none: it could not reach the mirror.
   */
  async releaseField(dist: string, field: string): Promise<string | undefined> {
    for (const dir of [join(this.root, 'state', 'lists'), join(this.root, 'state', 'lists', 'partial')]) {
      const names = await readdir(dir).catch(() => [] as string[]);
      const name = [`_dists_${dist}_InRelease`, `_dists_${dist}_Release`].map((end) => names.find((n) => n.endsWith(end))).find(Boolean);
      if (!name) continue;
      const text = await readFile(join(dir, name), 'utf8');
      const m = new RegExp(`^${field}:[ \\t]*(.*\\S)`, 'm').exec(text);
      if (m) return m[1];
    }
    return undefined;
  }

  private suiteAlias(dist: string): Promise<string | undefined> {
    return this.releaseField(dist, 'Suite');
  }

  /** Every version of every package matching `pattern` (anchored regex on the name). */
  async candidates(pattern: RegExp): Promise<DebPackage[]> {
    const { stdout } = await run('apt-cache', [...this.options, 'pkgnames'], { what: 'apt-cache pkgnames' });
    const names = stdout.split('\n').filter((n) => pattern.test(n));
    if (names.length === 0) return [];
    const { stdout: shown } = await run('apt-cache', [...this.options, 'show', ...names], { what: 'apt-cache show' });
    return parsePackagesIndex(shown).filter((p) => p.architecture === this.arch || p.architecture === 'all');
  }

  /** The newest package whose name matches `pattern`. */
  async newest(pattern: RegExp): Promise<DebPackage> {
    const all = await this.candidates(pattern);
    if (all.length === 0) {
      throw new TcelabError(
        `resolve ${pattern}`,
        `no package matches in Debian ${this.suite} ${this.arch}`,
        'run `tcelab guest build --refresh` to update the package lists',
      );
    }
    return all.sort((a, b) => compareDebianVersions(b.version, a.version))[0]!;
  }

  /** The candidate version of a package by exact name. */
  async show(name: string): Promise<DebPackage> {
    const all = await this.candidates(new RegExp(`^${name.replace(/[.+]/g, '\\$&')}$`));
    if (all.length === 0) throw new TcelabError(`resolve ${name}`, `no such package in Debian ${this.suite} ${this.arch}`);
    return all.sort((a, b) => compareDebianVersions(b.version, a.version))[0]!;
  }

  /** Downloads name=version into dir and verifies it against the index's SHA256. */
  async download(pkg: DebPackage, dir: string): Promise<string> {
    await mkdir(dir, { recursive: true });
    const target = join(dir, debFileName(pkg));
    if (existsSync(target) && (await sha256File(target)) === pkg.sha256) return target;
    const tmp = join(dir, `.download-${process.pid}`);
    await rm(tmp, { recursive: true, force: true });
    await mkdir(tmp);
    await run('apt-get', [...this.options, '-q', 'download', `${pkg.name}=${pkg.version}`], {
      cwd: tmp,
      what: `download ${pkg.name} ${pkg.version}`,
      hint: 'check that the Debian mirror is reachable, or run `tcelab guest build --refresh` if the version left the mirror',
    });
    const [file] = await readdir(tmp);
    if (!file) throw new TcelabError(`download ${pkg.name}`, 'apt-get download produced no file');
    const digest = await sha256File(join(tmp, file));
    if (digest !== pkg.sha256) {
      throw new TcelabError(
        `verify ${pkg.name} ${pkg.version}`,
        `sha256 ${digest} does not match the index's ${pkg.sha256}`,
        'the download was corrupted or the mirror is inconsistent; run the build again',
      );
    }
    await rename(join(tmp, file), target);
    await rm(tmp, { recursive: true, force: true });
    return target;
  }
}

/** What an apt run's failure says: its message and, for a TcelabError, its why (apt's own stderr lines). */
export function aptFailureText(err: unknown): string {
  return `${(err as Error).message} ${(err as { why?: string }).why ?? ''}`;
}

/**
 * apt-get update failed because the mirror answered that it has no Release file for the suite (a 404 for
 * dists/<suite>/InRelease and Release): the mirror has no such suite. A mirror that cannot be reached is not this:
 * apt-get update then warns, goes on, and fetches no index.
 */
export function isMissingReleaseError(err: unknown): boolean {
  return /does not have a Release file/.test(aptFailureText(err));
}

/** apt-get update failed because the mirror served an index that does not match its InRelease. */
export function isMidSyncError(err: unknown): boolean {
  return /unexpected size|Hash Sum mismatch|Mirror sync in progress/i.test(aptFailureText(err));
}

export function sha256File(path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const h = createHash('sha256');
    createReadStream(path)
      .on('data', (d) => h.update(d))
      .on('end', () => resolve(h.digest('hex')))
      .on('error', reject);
  });
}
