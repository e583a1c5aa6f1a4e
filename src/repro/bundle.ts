import { cacheDir } from '../util/paths.js';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile, copyFile, chmod } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { buildAgent } from '../image/agent-build.js';
import type { Matrix } from '../matrix/matrix.js';
import { findProcedure } from '../scenario/registry.js';
import { type KernelReport, scanKernelLog } from '../scenario/kernel-log.js';
import type { ScenarioReport } from '../scenario/scenario.js';
import { InputError } from '../util/errors.js';
import { run } from '../util/exec.js';
import type { Progress } from '../util/progress.js';
import { patchesForDefect } from '../kernel/defect-patches.js';
import { RECIPES, recipeFor, type ReproRecipe } from './recipes.js';
import { outcomesFromMatrix, reportText, type KernelOutcome } from './report-text.js';
import { formatStepsFile, stepChecks } from './steps-file.js';
import { runScript } from './run-script.js';

export interface ExportRequest {
  /** A run's results dir (results.json); or, without one, a scenario. */
  resultsDir?: string;
  scenario?: string;
  /** The check to reproduce; default: the run's first failed or known-defect check tcelab can reproduce. */
  check?: string;
  /** A `tcelab matrix` results dir: the kernels it reproduces on and does not. */
  matrixDir?: string;
  out?: string;
  progress: Progress;
}

export interface ExportedBundle {
  dir: string;
  tarball: string;
  recipe: ReproRecipe;
  check: string;
  report: string;
}

async function readJsonInput<T>(path: string, field: string): Promise<T> {
  try {
    return JSON.parse(await readFile(path, 'utf8')) as T;
  } catch (err) {
    throw new InputError('repro export', field, `${path} is not readable JSON (${(err as Error).message})`);
  }
}

/** Which recipe and check: the one named, or the run's first failure that a recipe reproduces. */
function choose(report: ScenarioReport | undefined, scenario: string, check: string | undefined): { recipe: ReproRecipe; check: string } {
  const reproducible = RECIPES.filter((r) => r.scenario === scenario).flatMap((r) => r.checks);
  if (check) {
    const recipe = recipeFor(scenario, check);
    if (!recipe)
      throw new InputError(
        'repro export',
        '--check',
        `tcelab has no reproducer for "${check}" of ${scenario}`,
        reproducible.length
          ? `reproducible checks: ${reproducible.map((c) => `"${c}"`).join(', ')}`
          : 'no check of this scenario has one yet',
      );
    return { recipe, check };
  }
  if (!report) throw new InputError('repro export', '--check', 'is needed with --scenario (there is no run to pick a failure from)');
  const failed = report.checks.filter((c) => c.status === 'fail' || c.status === 'known-defect');
  const first = failed.find((c) => recipeFor(scenario, c.name));
  if (!first)
    throw new InputError(
      'repro export',
      'RESULTS',
      failed.length
        ? `none of the run's ${failed.length} failed or known-defect checks has a reproducer (${failed.map((c) => `"${c.name}"`).join(', ')})`
        : 'the run has no failed or known-defect check',
      reproducible.length ? `reproducible checks of ${scenario}: ${reproducible.map((c) => `"${c}"`).join(', ')}` : undefined,
    );
  return { recipe: recipeFor(scenario, first.name)!, check: first.name };
}

/**
 * `tcelab repro export`: a directory (and its .tar.gz) a kernel maintainer can
 * use without tcelab: the static agent, the steps the check needs, run.sh and
 * REPORT.txt.
 */
export async function exportBundle(req: ExportRequest): Promise<ExportedBundle> {
  if (!req.resultsDir && !req.scenario)
    throw new InputError('repro export', 'RESULTS', "name a run's results dir, or --scenario with --check");
  let report: ScenarioReport | undefined;
  if (req.resultsDir) {
    const file = join(req.resultsDir, 'results.json');
    if (!existsSync(file))
      throw new InputError('repro export', 'RESULTS', `${req.resultsDir} holds no results.json`, 'name the results dir of one tcelab run');
    report = await readJsonInput<ScenarioReport>(file, 'RESULTS');
  }
  const scenario = report?.scenario ?? req.scenario!;
  if (!findProcedure(scenario) && !RECIPES.some((r) => r.scenario === scenario))
    throw new InputError('repro export', '--scenario', `there is no scenario ${scenario}`);
  const { recipe, check } = choose(report, scenario, req.check);
  const options: Record<string, unknown> = { ...(report?.options ?? {}) };
  const steps = recipe.steps(options);

  const consoleLog = req.resultsDir ? join(req.resultsDir, 'artifacts', 'console.log') : undefined;
  const logText = consoleLog && existsSync(consoleLog) ? await readFile(consoleLog, 'utf8') : '';
  const matching = (text: string) =>
    scanKernelLog(text, 40).filter((k) => !recipe.logPattern || recipe.logPattern.test([k.line, ...k.excerpt].join('\n')));
  let kernelReports = matching(logText);
  let kernelReportsFrom: string | undefined;
  let kernels: KernelOutcome[] = [];
  if (req.matrixDir) {
    const file = join(req.matrixDir, 'matrix.json');
    if (!existsSync(file))
      throw new InputError('repro export', '--matrix', `${req.matrixDir} holds no matrix.json`, 'name a tcelab matrix results dir');
    const matrix = await readJsonInput<Matrix>(file, '--matrix');
    kernels = outcomesFromMatrix(matrix, recipe, check, `tcelab matrix ${basename(resolve(req.matrixDir))}`);
    // A report the kernel logs late (6.12 warns when khugepaged frees the mm, 5–20 s after the worker's exit) can
    // fall after this run's end: then the excerpt comes from another kernel's run of the same scenario, said so.
    if (!kernelReports.length) {
      const found = await kernelReportsOfMatrix(matrix, recipe.scenario, matching);
      if (found) ({ reports: kernelReports, kernel: kernelReportsFrom } = found);
    }
  } else if (report) {
    const own = report.checks.find((c) => c.name === check);
    kernels = [
      {
        kernel: report.guestKernel ?? report.kernel?.release ?? "the run's kernel",
        pageSize: report.kernel?.pageSize,
        outcome: own && own.status !== 'pass' ? 'reproduces' : 'does not reproduce',
        observed: own ? `observed ${own.measured}, expected ${own.expected}` : undefined,
        source: 'this run',
      },
    ];
  }

  const dir = resolve(req.out ?? join(req.resultsDir ?? '.', `repro-${recipe.id}`));
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  const work = await mkdtemp(join(tmpdir(), 'tcelab-repro-'));
  try {
    await req.progress.step('the static agent for the bundle (cross-compiled once per source)', async () => {
      const agent = await buildAgent(work, cacheDir());
      if (!agent) throw new InputError('repro export', 'guest/agent', 'has no agent sources');
      await writeFile(join(dir, 'tcelab-agent'), agent, { mode: 0o755 });
    });
  } finally {
    await rm(work, { recursive: true, force: true });
  }
  const header = [
    `tcelab reproducer ${recipe.id}: ${recipe.subject}`,
    `from scenario ${scenario}${report ? ` (${req.resultsDir})` : ''}, options ${JSON.stringify(options)}`,
    `checks: ${stepChecks(steps).join('; ')}`,
    'run: ./tcelab-agent run steps.jsonl device=<PCI address>   (see run.sh)',
  ];
  await writeFile(join(dir, 'steps.jsonl'), formatStepsFile(header, steps));
  await writeFile(join(dir, 'run.sh'), runScript(recipe));
  await chmod(join(dir, 'run.sh'), 0o755);
  // The defect's fix goes with its reproducer: what a maintainer applies to see the reproducer pass.
  const patches = recipe.defect === undefined ? [] : patchesForDefect(recipe.defect);
  for (const p of patches) {
    await mkdir(join(dir, 'patches', p.base), { recursive: true });
    await copyFile(p.path, join(dir, 'patches', p.base, p.file));
  }
  const text = reportText({ recipe, check, options, steps, report, kernelReports, kernelReportsFrom, kernels, patches });
  await writeFile(join(dir, 'REPORT.txt'), text);
  if (consoleLog && existsSync(consoleLog)) await copyFile(consoleLog, join(dir, 'lab-console.log'));
  const tarball = `${dir}.tar.gz`;
  await run('tar', ['-czf', tarball, '-C', dirname(dir), basename(dir)], { what: `write ${tarball}` });
  return { dir, tarball, recipe, check, report: text };
}

/** The first run of the matrix (column order) of `scenario` whose console holds a matching kernel report. */
async function kernelReportsOfMatrix(
  matrix: Matrix,
  scenario: string,
  matching: (text: string) => KernelReport[],
): Promise<{ reports: KernelReport[]; kernel: string } | undefined> {
  for (const col of matrix.columns) {
    const dir = matrix.rows.find((r) => r.scenario === scenario && r.cells[col.label]?.resultsDir)?.cells[col.label]?.resultsDir;
    const log = dir ? join(dir, 'artifacts', 'console.log') : undefined;
    if (!log || !existsSync(log)) continue;
    const reports = matching(await readFile(log, 'utf8'));
    if (reports.length) return { reports, kernel: col.kernelRelease ?? col.kernel };
  }
  return undefined;
}
