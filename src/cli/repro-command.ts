import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { resolve } from 'node:path';
import { loadProfile } from '../qemu/profile.js';
import { exportBundle } from '../repro/bundle.js';
import { tryBundle } from '../repro/try-bundle.js';
import { InputError } from '../util/errors.js';
import { StderrProgress } from '../util/progress.js';

/** `tcelab repro export [RESULTS]`: the bundle a kernel maintainer can use without tcelab. */
export async function reproExportCommand(args: {
  target?: string;
  scenario?: string;
  check?: string;
  matrix?: string;
  out?: string;
  json: boolean;
}): Promise<number> {
  const progress = new StderrProgress();
  const bundle = await exportBundle({
    resultsDir: args.target,
    scenario: args.scenario,
    check: args.check,
    matrixDir: args.matrix,
    out: args.out,
    progress,
  });
  if (args.json)
    process.stdout.write(
      `${JSON.stringify({ dir: bundle.dir, tarball: bundle.tarball, recipe: bundle.recipe.id, check: bundle.check })}\n`,
    );
  else
    process.stdout.write(
      `${bundle.report}\nbundle: ${bundle.dir} (${bundle.tarball})\n  try it in a fresh guest: tcelab repro try ${bundle.dir} [--kernel …]\n`,
    );
  return 0;
}

/** `tcelab repro try BUNDLE`: the bundle in a fresh guest that runs no agent; exits with run.sh's code. */
export async function reproTryCommand(args: { target?: string; profile?: string; results?: string; json: boolean }): Promise<number> {
  if (!args.target) throw new InputError('repro try', 'BUNDLE', 'is missing', 'name a dir written by `tcelab repro export`');
  if (!existsSync(args.target)) throw new InputError('repro try', 'BUNDLE', `${args.target} does not exist`);
  const profile = await loadProfile(args.profile ?? 'emulated');
  const artifactsTo = resolve(args.results ?? `${args.target.replace(/\/+$/, '')}-try-${Date.now()}`);
  await mkdir(artifactsTo, { recursive: true });
  const progress = new StderrProgress();
  const outcome = await tryBundle({ bundleDir: args.target, profile, progress, artifactsTo });
  if (args.json) process.stdout.write(`${JSON.stringify({ ...outcome, artifacts: artifactsTo })}\n`);
  else
    process.stdout.write(
      `${outcome.output}\nrepro try: ${outcome.kernelRelease}, device ${outcome.device}: run.sh exited ${outcome.exitCode} ` +
        `(${['passed: not reproduced', 'REPRODUCED', 'could not run'][Math.min(outcome.exitCode, 2)]}); console: ${artifactsTo}\n`,
    );
  return outcome.exitCode;
}
