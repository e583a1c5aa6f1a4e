import { readFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { TcelabError } from '../util/errors.js';
import { printReport } from './scenario-command.js';
import type { ScenarioReport } from '../scenario/scenario.js';
import { releaseLine } from './output.js';
import { checkExchangeOutputs, type ExchangeOutputs, writeExchangeOutputs } from './exchange-outputs.js';

/** `tcelab report <dir>`: the summary of a finished run, from its results.json. */
export async function reportCommand(args: { dir: string; json: boolean } & ExchangeOutputs): Promise<number> {
  checkExchangeOutputs(args);
  const file = join(args.dir, 'results.json');
  if (!existsSync(file)) throw new TcelabError(`report ${args.dir}`, 'no results.json there', 'name a results dir written by `tcelab run`');
  let report: ScenarioReport;
  try {
    report = JSON.parse(await readFile(file, 'utf8')) as ScenarioReport;
  } catch (err) {
    throw new TcelabError(`report ${args.dir}`, `results.json is not valid JSON (${(err as Error).message})`);
  }
  if (!Array.isArray(report.checks) || typeof report.scenario !== 'string') {
    throw new TcelabError(`report ${args.dir}`, 'results.json is not a tcelab results file (no scenario/checks)');
  }
  if (await writeExchangeOutputs([report], args)) return report.passed ? 0 : 1;
  printReport(report, args.json);
  if (!args.json) {
    for (const v of report.releases ?? []) process.stdout.write(releaseLine(v));
    process.stdout.write(
      `  samples: ${(report.samples ?? []).filter((s) => s.source === 'host').length} host, ` +
        `${(report.samples ?? []).filter((s) => s.source === 'guest').length} guest; timeline: ` +
        `${join(args.dir, 'timeline.svg')}\n`,
    );
  }
  return report.passed ? 0 : 1;
}
