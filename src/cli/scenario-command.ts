import { writeReportFiles } from '../report/write.js';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describePressure } from '../probes/pressure.js';
import { runScenario, defaultResultsDir, refuseKernelLacking } from '../scenario/runner.js';
import type { ScenarioReport } from '../scenario/scenario.js';
import { runSuite, parseShard, shardEntries, type SuiteEntry, type SuiteResult } from '../scenario/suite.js';
import { resolveScenario, allScenarioFiles, procedures } from '../scenario/registry.js';
import { definitionFromFile } from '../scenario/data/interpreter.js';
import type { ScenarioFile } from '../scenario/data/scenario-file.js';
import type { ScenarioDefinition } from '../scenario/scenario.js';
import { type Progress, StderrProgress } from '../util/progress.js';
import { InputError } from '../util/errors.js';
import { formatMs, releaseLine } from './output.js';
import { toJunitXml } from '../report/junit.js';
import { bigintSafe } from '../util/json.js';
import { describingEnv, listProfiles, loadProfile } from '../qemu/profile.js';
import { ensureGuestImages, kernelFactsBeforeBuild } from '../image/ensure-guest-image.js';
import { LiveServer } from '../live/live-server.js';
import { validateScenarioOptions } from '../scenario/seeded-faults.js';
import { abortingOnSignals } from './interrupt.js';
import { checkExchangeOutputs, writeExchangeOutputs } from './exchange-outputs.js';

/** --set key=value pairs → scenario options (numbers and booleans parsed). */
export function parseSetOptions(pairs: string[]): Record<string, number | string | boolean> {
  const out: Record<string, number | string | boolean> = {};
  for (const p of pairs) {
    const m = /^([A-Za-z][A-Za-z0-9]*)=(.*)$/.exec(p);
    if (!m) throw new InputError('--set', p, 'must be key=value, e.g. --set sizeMiB=64');
    const v = m[2]!;
    out[m[1]!] = /^-?\d+(\.\d+)?$/.test(v) ? Number(v) : v === 'true' ? true : v === 'false' ? false : v;
  }
  return out;
}

export function entriesFor(
  def: ScenarioDefinition,
  file: ScenarioFile | undefined,
  set: Record<string, string | number | boolean>,
  profile: string | undefined,
): SuiteEntry[] {
  // --set replaces the file's variants: one run with exactly those options.
  const variants = Object.keys(set).length || !file ? [set] : file.variants;
  return variants.map((v) => ({
    label: [def.name, ...Object.values(v).filter((x) => typeof x === 'string')].join('-') || def.name,
    def,
    options: v,
    profile,
    exclusiveHost: file?.exclusiveHost ?? false,
  }));
}

function withRepeats(entries: SuiteEntry[], repeat: number): SuiteEntry[] {
  if (repeat <= 1) return entries;
  return entries.flatMap((e) => Array.from({ length: repeat }, (_, k) => ({ ...e, label: `${e.label}-r${k + 1}` })));
}

export interface RunArgs {
  target?: string;
  all: boolean;
  profile?: string;
  results?: string;
  set: string[];
  json: boolean;
  repeat: number;
  jobs: number;
  shard?: string;
  dryRun?: boolean;
  /** Port for the live view ('' or 0: any free port), undefined: no live view. */
  live?: string;
  kcidb?: string;
  ktap?: string;
}

/** `tcelab run <scenario>` / `tcelab run --all`: exit 0 only when every verdict passed. */
export async function scenarioCommand(args: RunArgs, resolved?: { def: ScenarioDefinition; file?: ScenarioFile }): Promise<number> {
  checkExchangeOutputs(args);
  if (!Number.isInteger(args.repeat) || args.repeat < 1 || args.repeat > 1000)
    throw new InputError('--repeat', String(args.repeat), 'must be an integer from 1 to 1000');
  if (!Number.isInteger(args.jobs) || args.jobs < 1 || args.jobs > 16)
    throw new InputError('--jobs', String(args.jobs), 'must be an integer from 1 to 16');
  const set = parseSetOptions(args.set);
  if (args.profile) await loadProfile(args.profile);
  let entries: SuiteEntry[];
  if (args.all) {
    entries = (await allScenarioFiles()).flatMap((f) => entriesFor(definitionFromFile(f, procedures), f, set, args.profile));
  } else {
    entries = entriesFor(resolved!.def, resolved!.file, set, args.profile);
  }
  // Every run's options, and the profile each scenario adjusts (a KVM scenario refuses a profile without KVM), are
  // checked before any image is built or lab started.
  // A kernel whose facts need no build (a local build) is checked against what each scenario needs here too: when it
  // can run none of them, that is bad input before any image is built; otherwise each one it cannot run is reported
  // by the suite as not started, beside the ones that ran.
  const refusals: unknown[] = [];
  for (const e of entries) {
    validateScenarioOptions(e.def, e.options);
    const given = await loadProfile(e.profile ?? e.def.defaultProfile);
    const profile = e.def.adjustProfile?.(given, e.options) ?? given;
    const facts = await kernelFactsBeforeBuild(profile);
    if (facts) {
      try {
        refuseKernelLacking(e.def, profile.guest.kernel, facts);
      } catch (err) {
        refusals.push(err);
      }
    }
  }
  if (refusals.length && refusals.length === entries.length) throw refusals[0];
  entries = withRepeats(entries, args.repeat);
  if (args.shard) entries = shardEntries(entries, parseShard(args.shard));
  if (args.dryRun) {
    const rows = entries.map((e) => ({ label: e.label, scenario: e.def.name, options: e.options, exclusiveHost: e.exclusiveHost }));
    process.stdout.write(
      args.json ? `${JSON.stringify(rows, null, 2)}\n` : rows.map((r) => `${r.label}${r.exclusiveHost ? ' (runs alone)' : ''}\n`).join(''),
    );
    return 0;
  }
  const progress = new StderrProgress();
  await ensureGuestImages(
    await Promise.all([...new Set(entries.map((e) => e.profile ?? e.def.defaultProfile))].map((n) => loadProfile(n))),
    progress,
  );
  if (entries.length === 1 && !args.all) {
    let live: LiveServer | undefined;
    if (args.live !== undefined) {
      const port = args.live === '' ? 0 : Number(args.live);
      if (!Number.isInteger(port) || port < 0 || port > 65535)
        throw new InputError('--live', args.live, 'must be a TCP port (0-65535), or nothing for any free port');
      live = new LiveServer();
      progress.info(`live view: ${await live.start(port)}`);
    }
    try {
      const report = await abortingOnSignals((signal) =>
        runScenario(entries[0]!.def, {
          profile: args.profile,
          resultsDir: args.results ?? defaultResultsDir(entries[0]!.label),
          progress,
          options: entries[0]!.options,
          signal,
          live,
          writeResults: writeReportFiles,
        }),
      );
      if (!(await writeExchangeOutputs([report], args))) printReport(report, args.json);
      return report.passed ? 0 : 1;
    } finally {
      // Give an open page a moment to receive the verdict before the server goes.
      if (live) await new Promise((r) => setTimeout(r, 1000));
      await live?.close();
    }
  }
  if (args.live !== undefined) throw new InputError('--live', args.live, 'works with a single run, not a suite');
  if (entries.length === 0) {
    progress.info('this shard has no runs');
    return 0;
  }
  progress.info(`suite: ${entries.length} runs, ${args.jobs} at a time${args.shard ? `, shard ${args.shard}` : ''}`);
  const resultsDir = args.results ?? defaultResultsDir(args.all ? 'suite' : entries[0]!.def.name);
  const result = await runSuiteOnSignals(entries, args, resultsDir, progress);
  // The suite's junit.xml, beside the per-run dirs and their own: one testsuite per run.
  await writeFile(join(resultsDir, 'junit.xml'), toJunitXml(result.reports));
  if (await writeExchangeOutputs(result.reports, args)) return result.passed ? 0 : 1;
  if (args.json) {
    process.stdout.write(
      `${JSON.stringify(
        {
          passed: result.passed,
          durationMs: result.durationMs,
          jobs: result.jobs,
          runs: result.reports.map((r) => ({ label: r.scenario, passed: r.passed, resultsDir: r.resultsDir, error: r.error })),
        },
        bigintSafe,
        2,
      )}\n`,
    );
  } else {
    for (const r of result.reports) printReport(r, false);
    const failed = result.reports.filter((r) => !r.passed).length;
    process.stdout.write(
      `suite: ${result.passed ? 'PASS' : 'FAIL'} — ${result.reports.length - failed}/${result.reports.length} runs ` +
        `passed in ${formatMs(result.durationMs)} with --jobs ${result.jobs}; junit: ` +
        `${result.reports[0] ? result.reports[0].resultsDir.replace(/\/[^/]+$/, '') : args.results}/junit.xml\n`,
    );
  }
  return result.passed ? 0 : 1;
}

export function printReport(report: ScenarioReport, json: boolean): void {
  if (json) {
    process.stdout.write(`${JSON.stringify(report, bigintSafe, 2)}\n`);
    return;
  }
  const failed = report.checks.filter((c) => c.status === 'fail');
  const defects = report.checks.filter((c) => c.status === 'known-defect');
  process.stdout.write(
    `${report.scenario} on ${report.profile}: ${report.passed ? 'PASS' : 'FAIL'} — ` +
      `${report.checks.length - failed.length - defects.length}/${report.checks.length} checks passed` +
      `${defects.length ? `, ${defects.length} known defect${defects.length > 1 ? 's' : ''} reproduced` : ''} in ${formatMs(report.durationMs)}\n` +
      (report.guestKernel
        ? `  guest kernel ${report.guestKernel}, QEMU ${report.qemuVersion}, spawn to init ${formatMs(report.spawnToInitMs ?? 0)}\n`
        : '') +
      defects.map((c) => `  KNOWN-DEFECT ${c.name}: measured ${c.measured}, expected ${c.expected}\n      ${c.knownDefect}\n`).join('') +
      failed.map((c) => `  FAIL ${c.name}: measured ${c.measured}, expected ${c.expected}${c.detail ? ` (${c.detail})` : ''}\n`).join('') +
      (report.releases ?? []).map(releaseLine).join('') +
      (report.timings?.length
        ? `  step timings:\n${report.timings.map((t) => `    ${t.step.padEnd(48)} ${formatMs(t.ms)}\n`).join('')}`
        : '') +
      (report.error ? `  error: ${report.error}\n` : '') +
      (report.hostPressure ? `  the machine meanwhile: ${describePressure(report.hostPressure)}\n` : '') +
      `  results: ${report.resultsDir}\n`,
  );
}

/** `tcelab list`: profiles and scenarios. */
export async function listCommand(args: { json: boolean }): Promise<number> {
  const profiles = await Promise.all(
    (await listProfiles()).map(async (name) => {
      try {
        const p = await loadProfile(name, describingEnv());
        return { name, description: p.description, accel: p.qemu.accel };
      } catch (err) {
        return { name, description: `(invalid: ${(err as Error).message})`, accel: '?' };
      }
    }),
  );
  const files = await allScenarioFiles();
  if (args.json) {
    process.stdout.write(
      `${JSON.stringify(
        {
          profiles,
          scenarios: files.map((f) => ({
            name: f.name,
            description: f.description,
            profile: f.profile,
            variants: f.variants,
            steps: f.steps.length,
          })),
          procedures: procedures.map((p) => p.name),
        },
        null,
        2,
      )}\n`,
    );
    return 0;
  }
  process.stdout.write('profiles (qemu-configs/):\n');
  for (const p of profiles) process.stdout.write(`  ${p.name.padEnd(22)} ${p.accel.padEnd(4)} ${p.description}\n`);
  process.stdout.write('scenarios (scenarios/):\n');
  for (const f of files) {
    const v = f.variants.length > 1 ? ` [${f.variants.length} variants]` : '';
    process.stdout.write(`  ${f.name.padEnd(22)} ${f.description}${v}\n`);
  }
  process.stdout.write(`procedures for "do" steps: ${procedures.map((p) => p.name).join(', ')}\n`);
  return 0;
}

export { resolveScenario };

/**
 * A suite of the CLI's (tcelab run --all, tcelab matrix): interrupted by SIGINT/SIGTERM, each run's report files
 * written, the shard recorded.
 */
export function runSuiteOnSignals(
  entries: SuiteEntry[],
  args: { jobs: number; shard?: string },
  resultsDir: string,
  progress: Progress,
): Promise<SuiteResult> {
  return abortingOnSignals((signal) =>
    runSuite(entries, {
      jobs: args.jobs,
      resultsDir,
      progress,
      signal,
      writeResults: writeReportFiles,
      ...(args.shard ? { shard: parseShard(args.shard) } : {}),
    }),
  );
}
