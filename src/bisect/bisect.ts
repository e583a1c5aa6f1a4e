import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { buildGuestImage } from '../image/image-builder.js';
import type { ImageVariant } from '../image/image-variant.js';
import { sourceCacheDir } from '../kbuild/kernel-source.js';
import { buildSourceKernel } from '../kbuild/source-kernel.js';
import { formatKernelSpec, type SourceKernelSpec } from '../kernel/kernel-spec.js';
import { runScenario } from '../scenario/runner.js';
import type { ScenarioDefinition, ScenarioReport } from '../scenario/scenario.js';
import { describeError } from '../util/errors.js';
import { bigintSafe } from '../util/json.js';
import { cacheDir } from '../util/paths.js';
import type { Progress } from '../util/progress.js';
import { bisectPage, stepLine } from './bisect-page.js';
import type { BisectResult, BisectStep } from './bisect-result.js';
import { type BisectState, type BisectTree, commitSubject, GitBisect } from './git-bisect.js';
import { type JudgedStep, judgeBuildFailure, judgeLabFailure, judgeReport } from './judge.js';

/** What a bisection runs at every commit, and where it writes. */
export interface BisectOptions {
  tree: BisectTree;
  def: ScenarioDefinition;
  /** The scenario's options (its file's, or --set's). */
  options: Record<string, number | string | boolean>;
  /** The profile of every run (default: the scenario's own), and the image variant it boots. */
  profile?: string;
  variant: ImageVariant;
  /** The check that judges (default: the whole verdict). */
  check?: string;
  /** The user's kconfig additions (--kconfig-add), on every commit's build. */
  kconfig: string[];
  resultsDir: string;
  progress: Progress;
  /** Aborting it (SIGINT/SIGTERM) ends the bisection after the current step's lab is quit; nothing more is marked. */
  signal?: AbortSignal;
  /** Writes each step's run files (report/write.ts): the CLI passes it, as for a run. */
  writeResults?: (report: ScenarioReport) => Promise<void>;
  /** 'off' (the default here: each commit's kernel boots once, a saved machine would never be used) or 'use'. */
  snapshots?: 'use' | 'off';
  /**
   * Called with a run that ran to its end without recording the named check, before it is judged: the caller may refuse
   * the name (bad input) rather than skip every commit.
   */
  onCheckAbsent?: (report: ScenarioReport) => void;
  cache?: string;
}

/**
 * Bisects the commits between good and bad with tcelab as the judge: git offers a commit, tcelab builds its kernel
 * (incrementally: every commit is built in the tree's one build dir), assembles the image, runs the scenario and
 * judges it (judge.ts), and git is told good, bad or skip, until it names the first bad commit or says only skipped
 * ones are left. bisect.json and bisect.md are rewritten after every step, so an interrupted bisection leaves its log.
 */
export async function runBisect(o: BisectOptions): Promise<BisectResult> {
  const t0 = Date.now();
  const { tree, progress } = o;
  await mkdir(o.resultsDir, { recursive: true });
  const result: BisectResult = {
    scenario: o.def.name,
    profile: o.profile ?? o.def.defaultProfile,
    ...(o.check !== undefined ? { check: o.check } : {}),
    tree: tree.top,
    good: { ...tree.good, subject: await commitSubject(tree.top, tree.good.commit) },
    bad: { ...tree.bad, subject: await commitSubject(tree.top, tree.bad.commit) },
    kconfig: o.kconfig,
    startedAt: new Date(t0).toISOString(),
    durationMs: 0,
    outcome: 'error',
    steps: [],
    gitLog: '',
    resultsDir: o.resultsDir,
  };
  const save = async () => {
    result.durationMs = Date.now() - t0;
    await writeFile(join(o.resultsDir, 'bisect.json'), `${JSON.stringify(result, bigintSafe, 2)}\n`);
    await writeFile(join(o.resultsDir, 'bisect.md'), bisectPage(result));
  };
  const started = await GitBisect.start(tree);
  const bisect = started.bisect;
  let state: BisectState = started.state;
  const estimate =
    state.kind === 'testing' && state.revisionsLeft !== undefined
      ? `, ${state.revisionsLeft + 1} commits to test, roughly ${(state.stepsLeft ?? 0) + 1} steps`
      : '';
  progress.info(
    `bisect ${o.def.name}${o.check ? ` by "${o.check}"` : ' by its verdict'}: ${tree.good.commit.slice(0, 12)} (good) .. ` +
      `${tree.bad.commit.slice(0, 12)} (bad) in ${tree.top}${estimate}`,
  );
  try {
    while (state.kind === 'testing') {
      const step = await testCommit(o, result.steps.length + 1, state);
      if (o.signal?.aborted) {
        result.outcome = 'interrupted';
        break;
      }
      result.steps.push(step);
      progress.info(stepLine(step, result.steps.length + (step.stepsLeft ?? 0)));
      await save();
      state = await bisect.mark(step.commit, step.judgement);
    }
    if (state.kind === 'first-bad') {
      result.outcome = 'first-bad';
      result.firstBad = { commit: state.commit, subject: await commitSubject(tree.top, state.commit) };
    } else if (state.kind === 'only-skipped') {
      result.outcome = 'only-skipped';
      result.candidates = [];
      for (const commit of state.candidates) {
        const judged = result.steps.find((s) => s.commit === commit);
        result.candidates.push({
          commit,
          subject: await commitSubject(tree.top, commit),
          ...(judged ? { judgement: judged.judgement, why: judged.why } : {}),
        });
      }
    }
  } catch (err) {
    result.outcome = 'error';
    result.error = describeError(err);
    throw err;
  } finally {
    result.gitLog = await bisect.log().catch(() => '');
    await bisect.close();
    await save().catch(() => {});
  }
  return result;
}

/** The path of a commit's export in the cache, as the compiler's lines start with it. */
const exportPrefix = (cache: string) => new RegExp(`${sourceCacheDir(cache).replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}/[^/\\s]+/src/`, 'g');

/** Builds, runs and judges one commit. Nothing here throws for the commit's sake: a build or lab that fails is a skip. */
async function testCommit(o: BisectOptions, n: number, state: Extract<BisectState, { kind: 'testing' }>): Promise<BisectStep> {
  const t0 = Date.now();
  const { progress } = o;
  const commit = state.commit;
  const subject = await commitSubject(o.tree.top, commit);
  const spec: SourceKernelSpec = { kind: 'tree', path: o.tree.top, ref: commit, flavour: 'powerpc64le', kconfig: o.kconfig };
  const kernel = formatKernelSpec(spec);
  const step: BisectStep = {
    step: n,
    commit,
    subject,
    ...(state.stepsLeft !== undefined ? { stepsLeft: state.stepsLeft } : {}),
    kernel,
    judgement: 'skip',
    why: '',
    ms: 0,
  };
  const done = (judged: JudgedStep): BisectStep => ({ ...step, ...judged, ms: Date.now() - t0 });
  progress.info(`step ${n}: ${commit.slice(0, 12)} ${subject}`);
  // The kernel first, on its own: a failure here is the commit's (it does not build), anything after it is the lab's.
  const cache = o.cache ?? cacheDir();
  const tb = Date.now();
  try {
    const built = await buildSourceKernel(spec, { field: '--tree', text: kernel }, cache, progress);
    step.build = { ms: Date.now() - tb, makeMs: built.buildMs, compiled: built.compiled, release: built.release };
  } catch (err) {
    // The compiler names files by their path in the export (kernel-source/tree-<root>/src/…): said relative to the tree.
    step.buildError = describeError(err).replace(exportPrefix(cache), '');
    return done(judgeBuildFailure(step.buildError));
  }
  if (o.signal?.aborted) return done({ judgement: 'skip', why: 'interrupted' });
  // The image around it: a failure here is this machine's (packages, the agent's build), not the commit's.
  const ti = Date.now();
  await buildGuestImage({ variant: o.variant, kernel, kernelField: '--tree', cache, progress });
  step.imageMs = Date.now() - ti;
  const tl = Date.now();
  const resultsDir = join(o.resultsDir, `step-${n}-${commit.slice(0, 12)}`);
  let report: ScenarioReport;
  try {
    report = await runScenario(o.def, {
      profile: o.profile,
      kernel,
      progress,
      resultsDir,
      options: o.options,
      signal: o.signal,
      writeResults: o.writeResults,
      snapshots: o.snapshots ?? 'off',
    });
  } catch (err) {
    step.labError = describeError(err);
    return done(judgeLabFailure(step.labError));
  }
  step.lab = { ms: Date.now() - tl, passed: report.passed, resultsDir, ...(report.error ? { error: report.error } : {}) };
  if (o.check !== undefined && !report.error && !report.checks.some((c) => c.name === o.check)) o.onCheckAbsent?.(report);
  return done(judgeReport(report, o.check));
}
