import { join } from 'node:path';
import { runBisect } from '../bisect/bisect.js';
import { bisectOutcomeLine, bisectTotals, formatSeconds } from '../bisect/bisect-page.js';
import { resolveBisectTree } from '../bisect/git-bisect.js';
import { askedOptions } from '../kbuild/lab-config.js';
import { parseKernelSpec, withKconfigAdditions } from '../kernel/kernel-spec.js';
import { loadProfile } from '../qemu/profile.js';
import { writeReportFiles } from '../report/write.js';
import { defaultResultsDir } from '../scenario/runner.js';
import { validateScenarioOptions } from '../scenario/seeded-faults.js';
import { InputError } from '../util/errors.js';
import { bigintSafe } from '../util/json.js';
import { StderrProgress } from '../util/progress.js';
import { abortingOnSignals } from './interrupt.js';
import { requireProfileInput } from './profile-input.js';
import { entriesFor, parseSetOptions, resolveScenario } from './scenario-command.js';

export interface BisectArgs {
  scenario: string;
  tree: string;
  good: string;
  bad: string;
  check?: string;
  profile?: string;
  set: string[];
  kconfigAdd: string[];
  /** --kernel given too: refused (the bisection builds each commit's kernel from --tree). */
  kernel?: string;
  results?: string;
  json: boolean;
}

/**
 * `tcelab bisect SCENARIO --tree PATH --good REF --bad REF [--check NAME]`: git bisect with tcelab as the judge
 * (src/bisect/). Everything is checked before anything is built: the scenario, its options and profile, the tree,
 * both refs and their order, the kconfig additions. Exit 0 when the first bad commit was found, 1 when not.
 */
export async function bisectCommand(args: BisectArgs): Promise<number> {
  if (args.kernel !== undefined)
    throw new InputError('tcelab bisect', '--kernel', 'the bisection builds each commit’s kernel from --tree', 'drop --kernel');
  // Every commit's kernel spec carries the additions: the profiles loaded here and by the runs must not take them (or
  // a kernel from the environment) for their own kernels.
  delete process.env.TCELAB_KCONFIG_ADD;
  delete process.env.TCELAB_KERNEL;
  const resolved = await resolveScenario(args.scenario);
  if (!resolved) throw new InputError('tcelab bisect', args.scenario, 'is not a scenario (tcelab list)');
  if (args.profile) await requireProfileInput('tcelab bisect', args.profile);
  const entries = entriesFor(resolved.def, resolved.file, parseSetOptions(args.set), args.profile);
  if (entries.length !== 1) {
    throw new InputError(
      'tcelab bisect',
      args.scenario,
      `has ${entries.length} variants: a bisection judges one run per commit`,
      `pick one with --set (its variants: ${entries.map((e) => JSON.stringify(e.options)).join(', ')})`,
    );
  }
  const entry = entries[0]!;
  validateScenarioOptions(entry.def, entry.options);
  const profile = await loadProfile(entry.profile ?? entry.def.defaultProfile);
  entry.def.adjustProfile?.(profile, entry.options);
  if (args.check !== undefined && !args.check.trim()) throw new InputError('tcelab bisect', '--check', 'names no check');
  // The kconfig additions as every commit's spec will carry them (a bad option or a missing fragment file: exit 2 now).
  const tree = await resolveBisectTree(args.tree, args.good, args.bad);
  const spec = parseKernelSpec(withKconfigAdditions(`tree:${tree.top}@${tree.bad.commit}`, args.kconfigAdd, '--kconfig-add'), '--tree');
  const kconfig = spec.kind === 'tree' ? spec.kconfig : [];
  await askedOptions('powerpc64le', kconfig);

  const progress = new StderrProgress();
  const resultsDir = args.results ?? defaultResultsDir(`bisect-${entry.label}`);
  const result = await abortingOnSignals((signal) =>
    runBisect({
      tree,
      def: entry.def,
      options: entry.options,
      profile: args.profile,
      variant: profile.guest.image,
      check: args.check,
      kconfig,
      resultsDir,
      progress,
      signal,
      writeResults: writeReportFiles,
      snapshots: process.env.TCELAB_SNAPSHOTS === 'use' ? 'use' : 'off',
      onCheckAbsent: (report) => {
        // A run that went to its end without the check: its name is not one the scenario records.
        throw new InputError(
          'tcelab bisect',
          '--check',
          `${entry.def.name} recorded no check named "${args.check}" (at ${report.resultsDir})`,
          `its checks: ${[...new Set(report.checks.map((c) => c.name))].map((n) => `"${n}"`).join(', ')}`,
        );
      },
    }),
  );
  if (args.json) process.stdout.write(`${JSON.stringify(result, bigintSafe, 2)}\n`);
  else {
    const totals = bisectTotals(result);
    process.stdout.write(
      `${bisectOutcomeLine(result)}\n` +
        `  ${result.steps.length} steps in ${formatSeconds(result.durationMs)}: builds ${formatSeconds(totals.buildMs)} ` +
        `(${totals.compiled} objects compiled), labs ${formatSeconds(totals.labMs)}\n` +
        result.steps.map((s) => `  ${s.step}. ${s.commit.slice(0, 12)} ${s.judgement.padEnd(4)} ${s.subject} — ${s.why}\n`).join('') +
        `  results: ${join(resultsDir, 'bisect.md')}, bisect.json\n`,
    );
  }
  return result.outcome === 'first-bad' ? 0 : 1;
}
