import { runScenario, type ScenarioReport } from '../scenario/runner.js';
import type { ScenarioDefinition } from '../scenario/scenario.js';
import { StderrProgress } from '../util/progress.js';
import { InputError } from '../util/errors.js';
import { formatMs } from './output.js';

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

export async function scenarioCommand(def: ScenarioDefinition, args: { profile?: string; results?: string; set: string[]; json: boolean }): Promise<number> {
  const progress = new StderrProgress();
  const report = await runScenario(def, {
    profile: args.profile, resultsDir: args.results, progress, options: parseSetOptions(args.set), handleSignals: true,
  });
  printReport(report, args.json);
  return report.passed ? 0 : 1;
}

export function printReport(report: ScenarioReport, json: boolean): void {
  if (json) {
    process.stdout.write(`${JSON.stringify(report, (_k, v) => (typeof v === 'bigint' ? v.toString() : v), 2)}\n`);
    return;
  }
  const failed = report.checks.filter((c) => c.status === 'fail');
  const defects = report.checks.filter((c) => c.status === 'known-defect');
  process.stdout.write(
    `${report.scenario} on ${report.profile}: ${report.passed ? 'PASS' : 'FAIL'} — ${report.checks.length - failed.length - defects.length}/${report.checks.length} checks passed` +
      `${defects.length ? `, ${defects.length} known defect${defects.length > 1 ? 's' : ''} reproduced` : ''} in ${formatMs(report.durationMs)}\n` +
      (report.guestKernel ? `  guest kernel ${report.guestKernel}, QEMU ${report.qemuVersion}, spawn to init ${formatMs(report.spawnToInitMs ?? 0)}\n` : '') +
      defects.map((c) => `  KNOWN-DEFECT ${c.name}: measured ${c.measured}, expected ${c.expected}\n      ${c.knownDefect}\n`).join('') +
      failed.map((c) => `  FAIL ${c.name}: measured ${c.measured}, expected ${c.expected}${c.detail ? ` (${c.detail})` : ''}\n`).join('') +
      (report.timings?.length ? `  step timings:\n${report.timings.map((t) => `    ${t.step.padEnd(48)} ${formatMs(t.ms)}\n`).join('')}` : '') +
      (report.error ? `  error: ${report.error}\n` : '') +
      `  results: ${report.resultsDir}\n`,
  );
}
