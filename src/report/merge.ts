import { existsSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { ScenarioReport } from '../scenario/scenario.js';
import { TcelabError } from '../util/errors.js';

/**
 * Results of one CI pipeline spread over machines, brought back together: each input is a results dir of a suite
 * (`run --all --shard i/n`, `matrix --shard i/n`: summary.json beside a dir per run) or of a single run
 * (results.json). What is missing is said: a shard of the whole that no input holds, a run a shard planned but did
 * not report.
 */
export interface MergedResults {
  reports: ScenarioReport[];
  /** Each input and what it was. */
  inputs: Array<{ dir: string; shard?: { index: number; count: number }; runs: number }>;
  missing: string[];
  passed: boolean;
}

interface SuiteSummary {
  shard?: { index: number; count: number };
  planned?: string[];
  runs: Array<{ label: string; resultsDir: string }>;
}

async function readJson<T>(path: string, what: string): Promise<T> {
  try {
    return JSON.parse(await readFile(path, 'utf8')) as T;
  } catch (err) {
    throw new TcelabError(`merge: ${what}`, `${path} is not readable JSON (${(err as Error).message})`);
  }
}

export async function mergeResults(dirs: string[]): Promise<MergedResults> {
  const merged: MergedResults = { reports: [], inputs: [], missing: [], passed: true };
  const shardCounts = new Map<number, Set<number>>();
  for (const dir of dirs) {
    if (existsSync(join(dir, 'results.json'))) {
      merged.reports.push(await readJson<ScenarioReport>(join(dir, 'results.json'), dir));
      merged.inputs.push({ dir, runs: 1 });
      continue;
    }
    if (!existsSync(join(dir, 'summary.json'))) {
      throw new TcelabError(
        `merge ${dir}`,
        'holds neither summary.json (a suite) nor results.json (a run)',
        'name results dirs of tcelab run or matrix',
      );
    }
    const summary = await readJson<SuiteSummary>(join(dir, 'summary.json'), dir);
    let found = 0;
    for (const label of summary.planned ?? summary.runs.map((r) => r.label)) {
      const file = join(dir, label, 'results.json');
      if (!existsSync(file)) {
        merged.missing.push(
          `run ${label} of ${dir}${summary.shard ? ` (shard ${summary.shard.index}/${summary.shard.count})` : ''}: no results.json`,
        );
        continue;
      }
      const report = await readJson<ScenarioReport>(file, label);
      // A results dir moved between machines (CI artifacts) is where it is now; the run is known by its label in
      // the suite (a repeat, a matrix's <scenario>@<kernel>), as in the suite's own summary.
      report.resultsDir = join(dir, label);
      report.scenario = label;
      merged.reports.push(report);
      found++;
    }
    merged.inputs.push({ dir, runs: found, ...(summary.shard ? { shard: summary.shard } : {}) });
    if (summary.shard) {
      const seen = shardCounts.get(summary.shard.count) ?? new Set<number>();
      if (seen.has(summary.shard.index)) merged.missing.push(`shard ${summary.shard.index}/${summary.shard.count} is given twice (${dir})`);
      seen.add(summary.shard.index);
      shardCounts.set(summary.shard.count, seen);
    }
  }
  for (const [count, seen] of shardCounts) {
    for (let i = 1; i <= count; i++) if (!seen.has(i)) merged.missing.push(`shard ${i}/${count}: not among the inputs`);
  }
  merged.passed = merged.missing.length === 0 && merged.reports.length > 0 && merged.reports.every((r) => r.passed);
  return merged;
}

/** Every results dir of a directory that holds several (a CI job's downloaded artifacts), sorted. */
export async function resultsDirsIn(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true });
  return entries
    .filter((e) => e.isDirectory() && (existsSync(join(dir, e.name, 'summary.json')) || existsSync(join(dir, e.name, 'results.json'))))
    .map((e) => join(dir, e.name))
    .sort();
}
