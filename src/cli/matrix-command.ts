import { requireProfileInput } from './profile-input.js';
import { resolveQemuInput } from '../qemu/stage-qemu.js';
import { mkdir, writeFile } from 'node:fs/promises';
import { fixProofs, fixProofText } from '../matrix/fix-proof.js';
import { join } from 'node:path';
import { buildGuestImage } from '../image/image-builder.js';
import { mergeRequirements, unmetRequirements, VFIO_SPAPR_REQUIREMENTS } from '../kernel/kernel-facts.js';
import {
  formatKernelSpec,
  isSourceKernel,
  kernelKey,
  parseKernelSpec,
  splitKernelList,
  withKconfigAdditions,
} from '../kernel/kernel-spec.js';
import { checkKernelFiles } from '../kernel/unresolvable-kernel.js';
import { buildMatrix, type MatrixColumn, type MatrixRun, matrixTable } from '../matrix/matrix.js';
import { matrixHtml, matrixJunit } from '../matrix/matrix-output.js';
import { checkQemuBinary, kconfigAdditions, loadProfile } from '../qemu/profile.js';
import { definitionFromFile } from '../scenario/data/interpreter.js';
import { allScenarioFiles, procedures, resolveScenario } from '../scenario/registry.js';
import { defaultResultsDir, refuseHotplugLeftOut } from '../scenario/runner.js';
import { validateScenarioOptions } from '../scenario/seeded-faults.js';
import { parseShard, type SuiteEntry, shardEntries } from '../scenario/suite.js';
import { InputError } from '../util/errors.js';
import { bigintSafe } from '../util/json.js';
import { StderrProgress } from '../util/progress.js';
import { checkExchangeOutputs, writeExchangeOutputs } from './exchange-outputs.js';
import { entriesFor, parseSetOptions, runSuiteOnSignals } from './scenario-command.js';

export interface MatrixArgs {
  scenarios: string[];
  all: boolean;
  kernels: string;
  qemus?: string;
  jobs: number;
  /** One profile for every run (a KVM lab host: the handlers under test are its kernel's). */
  profile?: string;
  shard?: string;
  results?: string;
  set: string[];
  json: boolean;
  kcidb?: string;
  ktap?: string;
}

/**
 * `tcelab matrix <scenario…> --kernels a,b[,…] [--qemus p,q]`: every scenario on every kernel (and QEMU), two
 * labs at a time with --jobs 2; one verdict per check and kernel, what changed from one kernel to the next, as a
 * table, matrix.json, junit.xml (a suite per kernel) and matrix.html.
 */
export async function matrixCommand(args: MatrixArgs): Promise<number> {
  // Everything is checked before an image is built or a lab started.
  checkExchangeOutputs(args);
  // A spec's own commas (local:<vmlinux>,<modules>, tree:…,64k) stay in it; --kconfig-add goes to each kernel built from source.
  const adds = kconfigAdditions();
  const kernels = splitKernelList(args.kernels).map((k) =>
    adds.length && isSourceKernel(parseKernelSpec(k, '--kernels')) ? withKconfigAdditions(k, adds, '--kernels') : k,
  );
  if (kernels.length === 0)
    throw new InputError('--kernels', args.kernels, 'must list at least one kernel, e.g. debian:trixie,debian:experimental');
  const specs = kernels.map((k) => parseKernelSpec(k, '--kernels'));
  // A kernel's missing files are refused before any kernel's image is built; a Debian suite, when its image is.
  for (const [i, spec] of specs.entries()) checkKernelFiles(spec, { field: '--kernels', text: kernels[i]! });
  const qemus: Array<string | undefined> = args.qemus ? args.qemus.split(',').filter(Boolean) : [undefined];
  for (const [i, q] of qemus.entries()) if (q) qemus[i] = await resolveQemuInput(q, '--qemus');
  for (const q of qemus) if (q) checkQemuBinary(q);
  if (!Number.isInteger(args.jobs) || args.jobs < 1 || args.jobs > 16)
    throw new InputError('--jobs', String(args.jobs), 'must be an integer from 1 to 16');
  if (!args.all && args.scenarios.length === 0)
    throw new InputError('tcelab matrix', '(no scenario)', 'name the scenarios to run, or --all');
  const set = parseSetOptions(args.set);
  if (args.profile) await requireProfileInput('tcelab matrix', args.profile);
  const base: SuiteEntry[] = [];
  if (args.all) {
    for (const f of await allScenarioFiles()) base.push(...entriesFor(definitionFromFile(f, procedures), f, set, args.profile));
  } else {
    for (const name of args.scenarios) {
      const r = await resolveScenario(name);
      if (!r) throw new InputError('tcelab matrix', name, 'is not a scenario (tcelab list)');
      base.push(...entriesFor(r.def, r.file, set, args.profile));
    }
  }
  for (const e of base) validateScenarioOptions(e.def, e.options);
  const columns: MatrixColumn[] = specs.flatMap((spec) =>
    qemus.map((qemu, qi) => ({
      label: `${kernelKey(spec)}${qemus.length > 1 ? `~qemu${qi + 1}` : ''}`,
      kernel: formatKernelSpec(spec),
      ...(qemu ? { qemu } : {}),
    })),
  );
  if (new Set(columns.map((c) => c.label)).size !== columns.length) throw new InputError('--kernels', args.kernels, 'names a kernel twice');
  let entries = base.flatMap((e) =>
    columns.map((c) => ({ ...e, label: `${e.label}@${c.label}`, kernel: c.kernel, qemu: c.qemu, column: c.label, scenario: e.label })),
  );
  if (args.shard) entries = shardEntries(entries, parseShard(args.shard));

  const progress = new StderrProgress();
  const resultsDir = args.results ?? defaultResultsDir('matrix');
  await mkdir(resultsDir, { recursive: true });
  // One image per kernel (and variant): built or found before any lab starts; a kernel that lacks what a
  // scenario needs makes that cell "not run", with what is missing.
  const runs: MatrixRun[] = [];
  const toRun: typeof entries = [];
  const profiles = await Promise.all(entries.map((e) => loadProfile(e.profile ?? e.def.defaultProfile)));
  // A scenario its profile cannot run whatever the kernel (it hot-plugs, the guest leaves hotplug out): refused first.
  for (const [i, e] of entries.entries()) refuseHotplugLeftOut(e.def, profiles[i]!);
  for (const [i, e] of entries.entries()) {
    const profile = profiles[i]!;
    const image = (await buildGuestImage({ variant: profile.guest.image, kernel: e.kernel, kernelField: '--kernels', progress })).image;
    const unmet = unmetRequirements(image.manifest.kernel, mergeRequirements(VFIO_SPAPR_REQUIREMENTS, e.def.requires));
    if (unmet.length)
      runs.push({
        scenario: e.scenario,
        column: e.column,
        notRunBecause: `kernel ${image.manifest.kernel.release} lacks ${unmet.join(', ')}`,
      });
    else toRun.push(e);
  }
  progress.info(
    `matrix: ${base.length} scenario runs × ${columns.length} columns = ${entries.length} ` +
      `runs${args.shard ? ` (shard ${args.shard})` : ''}, ${args.jobs} at a time`,
  );
  const suite = await runSuiteOnSignals(toRun, args, resultsDir, progress);
  for (const e of toRun) runs.push({ scenario: e.scenario, column: e.column, report: suite.reports.find((r) => r.scenario === e.label) });
  const built = buildMatrix(columns, runs);
  // A column that is the one before it plus a patch series proves (or not) what the patches fix.
  const proofs = fixProofs(built);
  const matrix = proofs.length ? { ...built, fixProofs: proofs } : built;
  await writeFile(join(resultsDir, 'matrix.json'), `${JSON.stringify(matrix, bigintSafe, 2)}\n`);
  // The results dir's junit.xml: a testsuite per kernel here, where a plain suite (tcelab run) has one per run.
  await writeFile(join(resultsDir, 'junit.xml'), matrixJunit(matrix));
  await writeFile(join(resultsDir, 'matrix.html'), matrixHtml(matrix));
  if (await writeExchangeOutputs(suite.reports, args)) return matrix.passed ? 0 : 1;
  if (args.json) process.stdout.write(`${JSON.stringify({ resultsDir, ...matrix }, bigintSafe, 2)}\n`);
  else {
    const proofText = proofs.map((p) => `${fixProofText(p)}\n\n`).join('');
    process.stdout.write(
      `${matrixTable(matrix)}\n\n${proofText}matrix: ${matrix.passed ? 'PASS' : 'FAIL'}; ${join(resultsDir, 'matrix.html')}, matrix.json, junit.xml\n`,
    );
  }
  return matrix.passed ? 0 : 1;
}
