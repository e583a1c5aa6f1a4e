import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { copyFile, mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { run } from '../util/exec.js';
import { TcelabError } from '../util/errors.js';
import { withLock } from '../util/lock.js';
import type { Progress } from '../util/progress.js';
import { CROSS, KBUILD_HINT, kmake } from './make.js';
import type { ModuleBuildTree } from './module-build-tree.js';

/** A module built against a kernel under test: the .ko (debug info stripped), its vermagic, and how it was made. */
export interface BuiltModule {
  name: string;
  ko: string;
  vermagic: string;
  /** The kernel's release and its source, and the options forced to match the kernel's build. */
  against: { release: string; source: string; forced: string[] };
  /** Build time of the module itself (0 when cached), and of preparing its tree. */
  buildMs: number;
  preparedMs: number;
}

/** A field of a module's .modinfo (vermagic, name…), read from the .ko's bytes. */
export function modinfoField(ko: Buffer, field: string): string | undefined {
  const key = Buffer.from(`${field}=`);
  for (let at = ko.indexOf(key); at >= 0; at = ko.indexOf(key, at + 1)) {
    // .modinfo entries are NUL-separated: a match counts only at an entry's start.
    if (at > 0 && ko[at - 1] !== 0) continue;
    const end = ko.indexOf(0, at);
    return ko.subarray(at + key.length, end < 0 ? undefined : end).toString('utf8');
  }
  return undefined;
}

/** Where a module built against a tree is kept: one dir per tree (its O= dir and build key), flags and source content. */
async function moduleBuildDir(
  tree: Pick<ModuleBuildTree, 'out' | 'kcflags' | 'key' | 'release'>,
  srcDir: string,
  name: string,
  cache: string,
): Promise<{ dir: string; files: string[] }> {
  const files = (await readdir(srcDir)).filter((f) => /\.(c|h)$/.test(f) || f === 'Kbuild').sort();
  const hash = createHash('sha256')
    .update(tree.out)
    .update(tree.kcflags)
    .update(tree.key ?? '');
  for (const f of files) hash.update(f).update(await readFile(join(srcDir, f)));
  return { dir: join(cache, 'kernel-build', 'modules', `${name}-${tree.release}-${hash.digest('hex').slice(0, 16)}`), files };
}

/** The module built before against this tree from these sources, if it was. */
export async function builtOutOfTreeModule(
  tree: Pick<ModuleBuildTree, 'out' | 'kcflags' | 'key' | 'release'>,
  srcDir: string,
  name: string,
  cache: string,
): Promise<BuiltModule | undefined> {
  const record = join((await moduleBuildDir(tree, srcDir, name, cache)).dir, 'module.json');
  return existsSync(record) ? { ...(JSON.parse(await readFile(record, 'utf8')) as BuiltModule), buildMs: 0, preparedMs: 0 } : undefined;
}

/**
 * Builds the out-of-tree module whose Kbuild is in `srcDir` (guest/<name>) against a prepared tree, once per tree and
 * source content (cached). A module whose vermagic is not the kernel's would be refused by it: that is an error here.
 */
export async function buildOutOfTreeModule(
  tree: ModuleBuildTree,
  srcDir: string,
  name: string,
  cache: string,
  progress: Progress,
): Promise<BuiltModule> {
  const { dir, files } = await moduleBuildDir(tree, srcDir, name, cache);
  const record = join(dir, 'module.json');
  const cached = async (): Promise<BuiltModule> => ({
    ...JSON.parse(await readFile(record, 'utf8')),
    buildMs: 0,
    preparedMs: tree.preparedMs,
  });
  if (existsSync(record)) return cached();
  await mkdir(join(cache, 'kernel-build', 'modules'), { recursive: true });
  return withLock(`${dir}.lock`, `build ${name}.ko for ${tree.release}`, progress, async () => {
    if (existsSync(record)) return cached();
    const t0 = Date.now();
    await rm(dir, { recursive: true, force: true });
    const src = join(dir, 'src');
    await mkdir(src, { recursive: true });
    for (const f of files) await copyFile(join(srcDir, f), join(src, f));
    await progress.step(`build ${name}.ko against ${tree.release} (${tree.source.describe})`, (update) =>
      kmake(['-C', tree.source.dir, `O=${tree.out}`, `M=${src}`, `KERNELRELEASE=${tree.release}`, `KCFLAGS=${tree.kcflags}`, 'modules'], {
        cwd: src,
        what: `build the guest module ${name} (make M=${src})`,
        onLine: (l) => update(l.trim().slice(0, 80)),
      }),
    );
    const ko = join(dir, `${name}.ko`);
    await run(`${CROSS.CROSS_COMPILE}strip`, ['--strip-debug', '-o', ko, join(src, `${name}.ko`)], {
      what: `strip ${name}.ko`,
      hint: KBUILD_HINT,
    });
    const vermagic = modinfoField(await readFile(ko), 'vermagic');
    if (vermagic !== tree.vermagic) {
      throw new TcelabError(
        `build the guest module ${name} for ${tree.release}`,
        `its vermagic is "${vermagic ?? 'missing'}", the kernel's is "${tree.vermagic}": the kernel would refuse it`,
        `an option the kernel was built with is missing from the prepared tree ${tree.out}; remove that directory to prepare it again`,
      );
    }
    const built: BuiltModule = {
      name,
      ko,
      vermagic,
      against: { release: tree.release, source: tree.source.describe, forced: tree.forced },
      buildMs: 0,
      preparedMs: 0,
    };
    await writeFile(record, `${JSON.stringify(built, null, 2)}\n`);
    return { ...built, buildMs: Date.now() - t0, preparedMs: tree.preparedMs };
  });
}
