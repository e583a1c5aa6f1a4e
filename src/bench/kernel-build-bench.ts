import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildGuestImage } from '../image/image-builder.js';
import { type GuestImage, guestInputsSha256 } from '../image/image-cache.js';
import { BUILD_RECORD, coldBuildsIn } from '../kbuild/build-record.js';
import { gitTreeContent } from '../kbuild/git-tree.js';
import { type BuiltKernel, kernelBuildDir, kernelOutputsDir } from '../kbuild/lab-kernel.js';
import { buildSourceKernel, debianSourceCommit } from '../kbuild/source-kernel.js';
import { parseKernelSpec, type SourceKernelSpec } from '../kernel/kernel-spec.js';
import { Lab } from '../lab/lab.js';
import type { Profile } from '../qemu/profile.js';
import { TcelabError } from '../util/errors.js';
import { cacheDir, packageRoot } from '../util/paths.js';
import { silentProgress, StderrProgress } from '../util/progress.js';
import { benchKernelTree, EDITED_FILE, editSource } from './bench-kernel-tree.js';
import { bootOnce } from './boot-bench.js';
import { against, coldBuildLine, duration, phaseLines, phaseOf, phaseRows, samples } from './kernel-bench-report.js';
import { childrenCpuMs, fmt, median } from './stats.js';
import { TimedProgress } from './timed-progress.js';

/** The short scenario whose whole `tcelab run` the no-op is measured on (about 2 s restored). */
const NOOP_SCENARIO = 'ddw-windows';
/** The source the bench's tree is a clone of: Debian trixie's, the lab's default. */
const BASE_SPEC = 'debian-source:trixie';
const BASE = parseKernelSpec(BASE_SPEC) as Extract<SourceKernelSpec, { kind: 'debian-source' }>;
/** Samples of each side where two are compared, alternating. */
const ROUNDS = 3;

type Out = (s?: string) => void;

export interface KernelBenchOptions {
  /** The profile labs boot with (emulated), and the image of Debian's generic kernel (the default) to compare with. */
  profile: Profile;
  debianImage: GuestImage;
  /** Also build the lab configuration cold: a fresh O= dir and an empty ccache (10–18 minutes of every core). */
  cold: boolean;
}

/**
 * `npm run bench`'s kernel builds, side by side in one run: a kernel tree's incremental rebuild after an edit of
 * vfio_iommu_spapr_tce.c through to a booted lab, phase by phase; what a no-op `tcelab run --kernel tree:…` pays over
 * the same run on an image already built; boot to agent of the tree-built kernel against Debian's generic one; and
 * the cold build (with --cold), else the last cold builds recorded in the cache.
 */
export async function kernelBuildBench(out: Out, o: KernelBenchOptions): Promise<void> {
  const cache = cacheDir();
  const progress = new TimedProgress(new StderrProgress());
  // Debian's source as a git repository (what `tcelab kernel source debian-source:trixie` prints): the same commit everywhere.
  const base = await debianSourceCommit(BASE, { field: 'the bench', text: BASE_SPEC }, cache, progress);
  const dir = await benchKernelTree(base.git.gitDir, base.commit, cache);
  const kernel = `tree:${dir}`;
  const input = { field: '--kernel', text: kernel };
  const spec = parseKernelSpec(kernel) as SourceKernelSpec;
  out('## Kernel builds from a source tree (the lab configuration; make -jN with ccache, out of tree)');
  out(`tree: the bench's clone (git clone --shared) of ${BASE_SPEC}'s repository (${base.describe}, ${base.commit.slice(0, 12)})`);
  out(`      --kernel ${kernel}`);

  if (o.cold) await coldBuild(out, spec, input, cache, progress);

  // The clone as the last run left it, built (a no-op but on the first run on this machine: its first build, not measured).
  const t0 = Date.now();
  const prepared = await buildGuestImage({ variant: 'base', kernel, progress });
  if (prepared.action !== 'up-to-date')
    out(`(the clone's image as the last run left it, built first: ${duration(Date.now() - t0)}, not measured)`);
  out();

  const built = await incremental(out, o, kernel, dir, progress);
  await noOpCost(out, kernel, spec, input, built, cache);
  await bootAgainstDebian(out, o, built.image);
  if (!o.cold) await lastColdBuilds(out, cache);
}

/** 1. Edit, `guest build --kernel tree:<clone>` through the library, boot to the agent: each phase and the whole. */
async function incremental(out: Out, o: KernelBenchOptions, kernel: string, dir: string, progress: TimedProgress) {
  await editSource(dir, new Date().toISOString());
  const from = progress.steps.length;
  const t0 = performance.now();
  const r = await buildGuestImage({ variant: 'base', kernel, progress });
  const imageMs = performance.now() - t0;
  const build = r.image.manifest.kernel.source.build;
  if (!build) throw new TcelabError('the kernel-build bench', `the image of ${kernel} records no build`);
  // The build as kept in the cache (its own copy of vmlinux and the modules) and the O= dir's record of what make did.
  const kept = JSON.parse(await readFile(join(kernelOutputsDir(cacheDir()), build.key, 'built.json'), 'utf8')) as BuiltKernel;
  const record = JSON.parse(await readFile(join(build.out, BUILD_RECORD), 'utf8')) as BuiltKernel;
  const boot = await bootToAgent(o.profile, r.image);
  const total = imageMs + boot.launchToAgentMs;
  out(`## Incremental: ${EDITED_FILE} edited (a comment line) → guest build → a booted lab (agent answers)`);
  out(`make compiled ${record.compiled} object${record.compiled === 1 ? '' : 's'}; kernel ${record.release}; image ${r.action}`);
  for (const line of phaseLines(phaseRows(progress.since(from), imageMs, 'hash the inputs, gzip, write the image'))) out(line);
  out(`  ${'guest build, in all'.padEnd(52)} ${fmt(imageMs / 1000, 1).padStart(6)} s`);
  out(`  ${'launch → the agent answers (cold boot)'.padEnd(52)} ${fmt(boot.launchToAgentMs / 1000, 1).padStart(6)} s`);
  out(
    `edit → booted lab: ${fmt(total / 1000, 1)} s ${against(total / 1000, 30, ' s')}; of it the build and image ${fmt(imageMs / 1000, 1)} s`,
  );
  out();
  return { image: r.image, kept };
}

/** Launch → the agent answers, and spawn → agent, of one cold lab on an image. */
async function bootToAgent(profile: Profile, image: GuestImage): Promise<{ launchToAgentMs: number; spawnToAgentMs: number }> {
  const t0 = Date.now();
  const lab = await Lab.launch(profile, { image, snapshots: 'off' });
  try {
    await lab.waitForGuestInit();
    await lab.agent();
    const now = Date.now();
    return { launchToAgentMs: now - t0, spawnToAgentMs: now - lab.spawnedAt };
  } finally {
    await lab.close();
  }
}

/**
 * 2. A no-op: `tcelab run <scenario> --kernel tree:<clone>` with nothing changed, against the same run on the same
 * kernel's files given as `local:` (an image already built, the same boot), alternating; and what the no-op pays.
 */
async function noOpCost(
  out: Out,
  kernel: string,
  spec: SourceKernelSpec,
  input: { field: string; text: string },
  built: { kept: BuiltKernel },
  cache: string,
): Promise<void> {
  const local = `local:${built.kept.vmlinux},${built.kept.modulesRoot}`;
  // What tcelab does before booting when the tree did not change: hash the image's inputs; the image is up to date.
  const inputsMs = await timed(() => guestInputsSha256(spec, input));
  const gitMs = await timed(() => gitTreeContent(spec as Extract<SourceKernelSpec, { kind: 'tree' }>, input));
  let action = '';
  const checkMs = await timed(async () => {
    action = (await buildGuestImage({ variant: 'base', kernel, progress: silentProgress })).action;
  });
  // Were make run all the same (it is not): configure, make's walk of the tree, modules_install.
  const forced = new TimedProgress(silentProgress);
  const makeMs = await timed(() => buildSourceKernel(spec, input, cache, forced, { make: 'always' }));
  const localInputsMs = await timed(() => guestInputsSha256(parseKernelSpec(local), { field: '--kernel', text: local }));

  // Each image built, and each run's machine saved, before the timed runs (they restore, as a person's runs do).
  await buildGuestImage({ variant: 'base', kernel: local, progress: new StderrProgress() });
  const tree: number[] = [];
  const cached: number[] = [];
  const how: string[] = [];
  runCli(kernel);
  runCli(local);
  for (let i = 0; i < ROUNDS; i++) {
    const a = runCli(kernel);
    const b = runCli(local);
    tree.push(a.ms);
    cached.push(b.ms);
    how.push(a.how, b.how);
  }
  const diff = median(tree) - median(cached);
  out(`## No-op: tcelab run ${NOOP_SCENARIO} --kernel tree:… with nothing changed, against the same run on the same kernel, built`);
  out(`${ROUNDS} runs each, alternating, the whole command (node, image check, lab start: ${[...new Set(how)].join(', ')}, verdict)`);
  out(`--kernel tree:<clone>:                 ${samples(tree)}`);
  out(`--kernel local:<its vmlinux,modules>:  ${samples(cached)}`);
  out(`difference of the medians: ${fmt(diff / 1000)} s ${against(diff / 1000, 10, ' s')}`);
  out(
    `what the no-op pays: the image check, ${fmt(checkMs, 0)} ms in all (${action}: make is not run, nothing repacked), of it the ` +
      `image's inputs hashed in ${fmt(inputsMs, 0)} ms,`,
  );
  out(
    `  of that git rev-parse, diff HEAD and the untracked files of the tree ${fmt(gitMs, 0)} ms (a local: kernel's inputs: ` +
      `${fmt(localInputsMs, 0)} ms)`,
  );
  out(
    `make, were it run on the unchanged tree: ${fmt(makeMs / 1000, 1)} s (` +
      `${forced.steps.map((s) => `${phaseOf(s.label)} ${fmt(s.ms / 1000, 1)} s`).join(', ')})`,
  );
  out();
}

/** One `tcelab run` of the no-op scenario as a person types it: its wall time and how its lab started. */
function runCli(kernel: string): { ms: number; how: string } {
  const results = join(tmpdir(), `tcelab-bench-noop-${process.pid}`);
  const t0 = performance.now();
  const r = spawnSync(
    process.execPath,
    [join(packageRoot, 'dist/cli/main.js'), 'run', NOOP_SCENARIO, '--kernel', kernel, '--json', '--results', results],
    { encoding: 'utf8', timeout: 600_000, maxBuffer: 64 * 2 ** 20 },
  );
  const ms = performance.now() - t0;
  spawnSync('rm', ['-rf', results]);
  // 1 is a verdict (a check failed): still a run to time; anything else is the command failing.
  if (r.status !== 0 && r.status !== 1) throw new Error(`tcelab run ${NOOP_SCENARIO} --kernel ${kernel} failed: ${r.stderr.slice(-800)}`);
  const report = JSON.parse(r.stdout || '{}') as { labStart?: { how?: string }; passed?: boolean };
  return { ms, how: `${report.labStart?.how ?? '?'} ${report.passed ? 'PASS' : 'FAIL'}` };
}

/** 3. Boot to agent, cold: the tree-built kernel against Debian's generic kernel (the default image), alternating. */
async function bootAgainstDebian(out: Out, o: KernelBenchOptions, image: GuestImage): Promise<void> {
  const tree: number[] = [];
  const debian: number[] = [];
  for (let i = 0; i < ROUNDS; i++) {
    tree.push(await bootOnce(o.profile, image, { snapshots: 'off' }));
    debian.push(await bootOnce(o.profile, o.debianImage, { snapshots: 'off' }));
  }
  const ratio = median(tree) / median(debian);
  out(`## Boot to agent (spawn → the agent answers, cold), ${ROUNDS} each, alternating`);
  const names = [
    `tree-built ${image.manifest.kernelRelease} (lab configuration):`,
    `Debian's ${o.debianImage.manifest.kernelRelease} (generic):`,
  ];
  const width = Math.max(...names.map((n) => n.length));
  out(`${names[0]!.padEnd(width)} ${samples(tree)}`);
  out(`${names[1]!.padEnd(width)} ${samples(debian)}`);
  out(`ratio tree-built / Debian's: ${fmt(ratio)} ${against(ratio, 0.5)}`);
  out();
}

/** 4. A cold build of the lab configuration: the clone's O= dir started over, with an empty ccache of its own. */
async function coldBuild(
  out: Out,
  spec: SourceKernelSpec,
  input: { field: string; text: string },
  cache: string,
  progress: TimedProgress,
): Promise<void> {
  const ccache = await mkdtemp(join(tmpdir(), 'tcelab-bench-ccache-'));
  try {
    const cpu0 = childrenCpuMs(readFileSync('/proc/self/stat', 'utf8'));
    const from = progress.steps.length;
    const t0 = performance.now();
    const b = await buildSourceKernel(spec, input, cache, progress, { make: 'from-scratch', ccache });
    const ms = performance.now() - t0;
    const cpu = childrenCpuMs(readFileSync('/proc/self/stat', 'utf8')) - cpu0;
    out('## Cold build (--cold): a fresh O= dir, an empty ccache');
    out(`${duration(ms)} for ${b.compiled} objects, ${fmt(cpu / 1000, 0)} s of CPU (${fmt((cpu / ms) * 100, 0)} % of one core)`);
    for (const line of phaseLines(phaseRows(progress.since(from), ms, 'the rest'))) out(line);
    out();
  } finally {
    await rm(ccache, { recursive: true, force: true });
  }
}

/** Without --cold: the cold builds the cache's records keep (the last one of each O= dir). */
async function lastColdBuilds(out: Out, cache: string): Promise<void> {
  const found = await coldBuildsIn(kernelBuildDir(cache));
  out('## Cold build: not run (`npm run bench -- --cold` runs it: 10–18 min); the last recorded in this cache');
  if (!found.length) out('none recorded (builds before records carried it say only their last, incremental build)');
  for (const b of found) out(coldBuildLine(b));
  out();
}

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return performance.now() - t0;
}
