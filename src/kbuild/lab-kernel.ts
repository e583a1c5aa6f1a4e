import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { copyFile, cp, mkdir, readdir, readFile, rename, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import type { KernelFlavour } from '../kernel/kernel-spec.js';
import { withLock } from '../util/lock.js';
import type { Progress } from '../util/progress.js';
import { BUILD_RECORD, type BuildRecordExtras, ccacheIsEmpty, type ColdBuild } from './build-record.js';
import type { KernelSourceTree } from './kernel-source.js';
import { markUsed } from '../util/mark-used.js';
import { type AskedOption, allconfigText, unmetOptions, unmetOptionsError } from './lab-config.js';
import { CROSS, KBUILD_HINT, kmake } from './make.js';
import { crossCompilerVersion } from './module-build-tree.js';

/**
 * A lab kernel built from a source tree, out of tree (O= in the cache): `allnoconfig` with the lab's fragment and
 * the user's additions, every option checked, then vmlinux and the modules (ccache, all cores), and
 * `modules_install` into a modules root: what `local:` staging takes.
 */
export interface BuiltKernel {
  /** The O= directory (kept: the next build of the same tree and page size is incremental in it). */
  out: string;
  vmlinux: string;
  /** INSTALL_MOD_PATH of modules_install: lib/modules/<release>/ below it. */
  modulesRoot: string;
  release: string;
  /** What the build is of: the tree's content, the configuration and the compiler (the cache key). */
  key: string;
  source: { dir: string; describe: string; key: string };
  /** How long make took this time (0: the build was there already), and how many objects it compiled. */
  buildMs: number;
  compiled: number;
}

/** What one build takes: the tree, where to build it, and its configuration. */
export interface LabKernelBuild {
  source: KernelSourceTree;
  /** The O= directory's name in the cache (one per tree and page size: builds of the same tree are incremental). */
  outName: string;
  flavour: KernelFlavour;
  asked: AskedOption[];
  /** Where the user's additions came from, named when one does not come out as asked. */
  field?: string;
}

/** The record of the last build in an O= dir (tcelab-build.json). */
type BuildRecord = BuiltKernel & BuildRecordExtras;

/**
 * How to build, for measuring builds (the bench): `make` 'if-stale' (the default: nothing when the record says
 * this content is built), 'always' (make in the O= dir even so: what a no-op make costs), 'from-scratch' (the O= dir
 * removed first: a cold build); `ccache`, another ccache dir than the cache's (an empty one: a truly cold build).
 */
export interface KernelBuildOptions {
  make?: 'if-stale' | 'always' | 'from-scratch';
  ccache?: string;
}

/** The format of a build (flags and environment make does not see on its command lines): another one starts the O= dir over. */
export const BUILD_FORMAT = 2;
const FORMAT = BUILD_FORMAT;

/** Where builds of trees live, and ccache's store. */
export const kernelBuildDir = (cache: string) => join(cache, 'kernel-build', 'trees');
export const ccacheDir = (cache: string) => join(cache, 'ccache');

/** Compiles of a cold build of the lab configuration (measured on Debian's 6.12.117: 937), for the progress bar before a first build counted them. */
const LAB_CONFIG_OBJECTS = 940;

/** What to do when make fails in a tree: the compiler's lines say what; the tools may be missing; the O= dir may be stale. */
const buildHint = (tree: string, out: string) =>
  `the compiler's lines above say what failed in ${tree}; if the tools are missing, ${KBUILD_HINT}; ` +
  `a build dir left inconsistent (an interrupted build) is removed with rm -rf ${out}`;

/** A build's fixed identity: no timestamp, user, host or build counter of this machine ends up in the kernel. */
const REPRODUCIBLE = {
  KBUILD_BUILD_TIMESTAMP: 'Thu Jan  1 00:00:00 UTC 1970',
  KBUILD_BUILD_USER: 'tcelab',
  KBUILD_BUILD_HOST: 'tcelab',
  KBUILD_BUILD_VERSION: '1',
};

/**
 * The format of build keys (what a key says of its source): 2 since a tree as it stands is keyed with its path (its
 * build is not its commit's: "6.12.117+"); builds kept under keys of another format are not taken, and the images made
 * from them are made again (image inputs carry it).
 */
export const KEPT_FORMAT = 2;

/** The cache key of a build: its source's content, the configuration asked for, the compiler and the format. */
export async function labKernelKey(sourceKey: string, asked: AskedOption[]): Promise<string> {
  return createHash('sha256')
    .update(JSON.stringify({ FORMAT, KEPT_FORMAT, sourceKey, compiler: await crossCompilerVersion() }))
    .update(allconfigText(asked))
    .digest('hex')
    .slice(0, 20);
}

/**
 * Where built kernels are kept, one dir per build key (vmlinux, the modules root, built.json): an O= dir holds only its
 * last build (a history's export moves from commit to commit), while a matrix or a bisection comes back to earlier ones.
 */
export const kernelOutputsDir = (cache: string) => join(cache, 'kernel-build', 'outputs');
/** How many built kernels are kept (≈11 MB each with the lab configuration); the least recently used go first. */
const KEPT_OUTPUTS = 24;

/** The build a record (an O= dir's, or a kept one's) says is there, when it is of this key and its files are there. */
async function readBuild(record: string, key: string): Promise<BuiltKernel | undefined> {
  const r = JSON.parse(await readFile(record, 'utf8').catch(() => '{}')) as Partial<BuiltKernel>;
  return r.key === key && r.vmlinux && existsSync(r.vmlinux) && r.modulesRoot && existsSync(r.modulesRoot)
    ? { ...(r as BuiltKernel), buildMs: 0, compiled: 0 }
    : undefined;
}

/** A build kept before for this source and configuration, if there is one. */
export async function savedLabKernel(cache: string, sourceKey: string, asked: AskedOption[]): Promise<BuiltKernel | undefined> {
  const key = await labKernelKey(sourceKey, asked);
  const built = join(kernelOutputsDir(cache), key, 'built.json');
  const found = await readBuild(built, key);
  // Used now: the last to be pruned.
  if (found) await utimes(built, new Date(), new Date()).catch(() => undefined);
  return found;
}

/**
 * `use` run on a build in its O= dir, made to hold this build (built, incrementally, when it holds another) and held
 * under the O= dir's lock meanwhile: what is built against the tree (a guest module) sees this build's tree. Options
 * the tree cannot give are an error before anything is compiled.
 */
export async function inLabKernelBuild<T>(
  b: LabKernelBuild,
  cache: string,
  progress: Progress,
  use: (built: BuiltKernel) => Promise<T>,
  opts: KernelBuildOptions = {},
): Promise<T> {
  const how = opts.make ?? 'if-stale';
  const out = join(kernelBuildDir(cache), b.outName);
  const key = await labKernelKey(b.source.key, b.asked);
  await mkdir(kernelBuildDir(cache), { recursive: true });
  await mkdir(out, { recursive: true });
  await markUsed(out);
  const record = join(out, BUILD_RECORD);
  const inOut = () => readBuild(record, key);
  // A cold build takes minutes: a second process building the same tree waits for it (an hour at most).
  return withLock(
    `${out}.lock`,
    `build ${b.source.describe}`,
    progress,
    async () => {
      const inDir = how === 'if-stale' ? await inOut() : undefined;
      if (inDir) return use(inDir);
      // Measuring builds: make runs all the same, in the O= dir as it is or started over.
      if (how === 'from-scratch') await rm(out, { recursive: true, force: true });
      return use(await make(b, { out, key, record, ccache: opts.ccache ?? ccacheDir(cache) }, progress));
    },
    { waitMs: 60 * 60_000 },
  );
}

/** Builds (or finds built) a lab kernel, kept in its own dir (kernel-build/outputs/<key>). */
export async function buildLabKernel(
  b: LabKernelBuild,
  cache: string,
  progress: Progress,
  opts: KernelBuildOptions = {},
): Promise<BuiltKernel> {
  const fresh = (opts.make ?? 'if-stale') !== 'if-stale';
  const saved = () => (fresh ? Promise.resolve(undefined) : savedLabKernel(cache, b.source.key, b.asked));
  return (await saved()) ?? inLabKernelBuild(b, cache, progress, async (built) => (await saved()) ?? keepLabKernel(cache, built), opts);
}

/** A build copied out of its O= dir into its own (the next build in that O= dir replaces vmlinux and the modules). */
export async function keepLabKernel(cache: string, built: BuiltKernel): Promise<BuiltKernel> {
  const kept = join(kernelOutputsDir(cache), built.key);
  const tmp = `${kept}.tmp-${process.pid}`;
  await rm(tmp, { recursive: true, force: true });
  await mkdir(tmp, { recursive: true });
  await copyFile(built.vmlinux, join(tmp, 'vmlinux'));
  await cp(built.modulesRoot, join(tmp, 'modules'), { recursive: true, verbatimSymlinks: true });
  const result: BuiltKernel = { ...built, vmlinux: join(kept, 'vmlinux'), modulesRoot: join(kept, 'modules') };
  await writeFile(join(tmp, 'built.json'), `${JSON.stringify(result, null, 2)}\n`);
  await rm(kept, { recursive: true, force: true });
  await rename(tmp, kept);
  await pruneOutputs(cache);
  return result;
}

/** Keeps the KEPT_OUTPUTS most recently used builds. */
async function pruneOutputs(cache: string): Promise<void> {
  const dir = kernelOutputsDir(cache);
  const all = await Promise.all(
    (await readdir(dir)).map(async (name) => ({ name, at: (await stat(join(dir, name, 'built.json')).catch(() => undefined))?.mtimeMs })),
  );
  const done = all.filter((o) => o.at !== undefined).sort((a, b) => b.at! - a.at!);
  for (const old of done.slice(KEPT_OUTPUTS)) await rm(join(dir, old.name), { recursive: true, force: true });
}

/** Where one build goes: its O= dir, its key, its record file, the ccache dir it uses. */
interface BuildPlace {
  out: string;
  key: string;
  record: string;
  ccache: string;
}

async function make(b: LabKernelBuild, place: BuildPlace, progress: Progress): Promise<BuiltKernel> {
  const { out, key, record } = place;
  const t0 = Date.now();
  await mkdir(out, { recursive: true });
  await mkdir(place.ccache, { recursive: true });
  // Before configure, whose host tools (HOSTCC=ccache gcc) are the first things ccache stores: was this build's ccache empty?
  const ccacheWasEmpty = await ccacheIsEmpty(place.ccache);
  let previous = JSON.parse(await readFile(record, 'utf8').catch(() => '{}')) as Partial<BuildRecord>;
  // A dir left by another format of build (other flags, not on make's command lines) is started over; one whose last
  // build failed (no record) is not: the build after a fix is incremental.
  const formatFile = join(out, 'tcelab-format');
  const format = (await readFile(formatFile, 'utf8').catch(() => undefined))?.trim() ?? previous.format?.toString();
  if (existsSync(join(out, '.config')) && format !== undefined && format !== String(FORMAT)) {
    progress.info(`${out} holds a build of another format (${format}): building from scratch`);
    await rm(out, { recursive: true, force: true });
    await mkdir(out, { recursive: true });
    previous = {};
  }
  await writeFile(formatFile, `${FORMAT}\n`);
  // Invalid until this build completes: an interrupted build is never taken for a finished one.
  await rm(record, { force: true });
  const allconfig = join(out, 'tcelab.allconfig');
  await writeFile(allconfig, allconfigText(b.asked));
  // No CCACHE_BASEDIR: ccache would then compile with paths relative to O=, and the kernel's -fmacro-prefix-map no
  // longer strips the tree's path from __FILE__ (a WARN then names ../../../kernel-source/…/mm/mmu_context.c).
  const env = { ...REPRODUCIBLE, CCACHE_DIR: place.ccache };
  const cc = [`CC=ccache ${CROSS.CROSS_COMPILE}gcc`, 'HOSTCC=ccache gcc'];
  const makeIn = (what: string, args: string[], onLine?: (l: string) => void) =>
    kmake(['-C', b.source.dir, `O=${out}`, ...cc, ...args], {
      cwd: b.source.dir,
      what,
      env,
      onLine,
      hint: buildHint(b.source.describe, out),
    });
  await progress.step(
    `configure ${b.source.describe} (allnoconfig + the lab fragment, ${b.asked.filter((o) => o.by === 'user').length} of yours)`,
    () => makeIn(`configure ${b.source.describe}`, [`KCONFIG_ALLCONFIG=${allconfig}`, 'allnoconfig']),
  );
  const unmet = unmetOptions(b.asked, await readFile(join(out, '.config'), 'utf8'));
  if (unmet.length) throw unmetOptionsError(unmet, b.source.describe, b.field);
  const cold = !existsSync(join(out, 'vmlinux'));
  const total = previous.coldObjects ?? LAB_CONFIG_OBJECTS;
  let compiled = 0;
  await progress.step(`build ${b.source.describe} (make -j${availableParallelism()} vmlinux modules, ccache)`, (update) =>
    makeIn(`build ${b.source.describe}`, [`-j${availableParallelism()}`, 'vmlinux', 'modules'], (line) => {
      const m = /^\s+(?:CC|AS)(?: \[M\])?\s+(\S+\.o)$/.exec(line);
      if (!m) return;
      compiled++;
      // A cold build's bar counts against a full build's compiles; an incremental one says what it compiles.
      update(`${compiled}${cold ? `/≈${total}` : ''} ${m[1]}`, cold ? Math.min(0.99, compiled / total) : undefined);
    }),
  );
  const release = (await readFile(join(out, 'include', 'config', 'kernel.release'), 'utf8')).trim();
  const modulesRoot = join(out, 'tcelab-modules');
  await rm(modulesRoot, { recursive: true, force: true });
  await progress.step(`install the modules of ${release}`, () =>
    makeIn(`make modules_install (${release})`, [`INSTALL_MOD_PATH=${modulesRoot}`, 'INSTALL_MOD_STRIP=1', 'modules_install']),
  );
  const result: BuiltKernel = {
    out,
    vmlinux: join(out, 'vmlinux'),
    modulesRoot,
    release,
    key,
    source: { dir: b.source.dir, describe: b.source.describe, key: b.source.key },
    buildMs: Date.now() - t0,
    compiled,
  };
  // A cold build's count is the next cold build's bar, and the record of the last cold build (the bench prints it).
  const coldObjects = cold ? compiled : previous.coldObjects;
  const coldBuild: ColdBuild | undefined = cold
    ? { at: new Date().toISOString(), ms: result.buildMs, objects: compiled, emptyCcache: ccacheWasEmpty, jobs: availableParallelism() }
    : previous.coldBuild;
  await writeFile(record, `${JSON.stringify({ ...result, coldObjects, coldBuild, format: FORMAT } satisfies BuildRecord, null, 2)}\n`);
  progress.info(
    `kernel ${release} built from ${b.source.describe} in ${(result.buildMs / 1000).toFixed(1)} s (${compiled} objects compiled)`,
  );
  return result;
}
