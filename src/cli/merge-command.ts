import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { buildMatrix, type MatrixColumn, type MatrixRun, matrixTable } from '../matrix/matrix.js';
import { matrixHtml, matrixJunit } from '../matrix/matrix-output.js';
import { kernelKey, parseKernelSpec } from '../kernel/kernel-spec.js';
import { toJunitXml } from '../report/junit.js';
import { toKcidb } from '../report/kcidb.js';
import { mergeResults, resultsDirsIn } from '../report/merge.js';
import { InputError } from '../util/errors.js';
import { bigintSafe } from '../util/json.js';
import { checkExchangeOutputs, type ExchangeOutputs, writeExchangeOutputs } from './exchange-outputs.js';

/**
 * `tcelab report --merge DIR… --results OUT`: the shards of one pipeline as one result: OUT/summary.json,
 * OUT/junit.xml, OUT/kcidb.json and, for matrix shards, OUT/matrix.{json,html}; what is missing is named, and
 * makes it fail.
 */
export async function mergeCommand(args: { dirs: string[]; results?: string; json: boolean } & ExchangeOutputs): Promise<number> {
  checkExchangeOutputs(args);
  if (args.dirs.length === 0)
    throw new InputError('tcelab report --merge', '(no dir)', 'name the results dirs of the shards (or a dir holding them)');
  if (!args.results) throw new InputError('tcelab report --merge', '--results', 'name the dir the merged results go to');
  const dirs: string[] = [];
  for (const d of args.dirs) {
    if (!existsSync(d)) throw new InputError('tcelab report --merge', d, 'does not exist');
    const isResults = existsSync(join(d, 'summary.json')) || existsSync(join(d, 'results.json'));
    dirs.push(...(isResults ? [d] : await resultsDirsIn(d)));
  }
  const merged = await mergeResults(dirs);
  await mkdir(args.results, { recursive: true });
  await writeFile(join(args.results, 'junit.xml'), toJunitXml(merged.reports));
  await writeFile(join(args.results, 'kcidb.json'), `${JSON.stringify(toKcidb(merged.reports), null, 2)}\n`);
  const summary = {
    passed: merged.passed,
    inputs: merged.inputs,
    missing: merged.missing,
    runs: merged.reports.map((r) => ({ label: r.scenario, passed: r.passed, resultsDir: r.resultsDir, error: r.error })),
  };
  await writeFile(join(args.results, 'summary.json'), `${JSON.stringify(summary, bigintSafe, 2)}\n`);
  // Matrix shards: runs labelled <scenario>@<kernel>: the matrix is rebuilt from all of them.
  let table = '';
  if (merged.reports.some((r) => r.scenario.includes('@'))) {
    const columns: MatrixColumn[] = [];
    const runs: MatrixRun[] = [];
    for (const r of merged.reports) {
      const [scenario, column] = r.scenario.split('@') as [string, string];
      const spec = r.kernel?.source.spec;
      if (!columns.some((c) => c.label === column)) columns.push({ label: column, kernel: spec ?? column });
      runs.push({ scenario, column, report: r });
    }
    // Oldest kernel first, as the matrix was asked for: the columns' order in the kernel specs is not in the runs,
    // so it follows the kernels' releases.
    columns.sort((a, b) => kernelOrder(a.kernel).localeCompare(kernelOrder(b.kernel)));
    const matrix = buildMatrix(columns, runs);
    await writeFile(join(args.results, 'matrix.json'), `${JSON.stringify(matrix, bigintSafe, 2)}\n`);
    await writeFile(join(args.results, 'matrix.html'), matrixHtml(matrix));
    await writeFile(join(args.results, 'matrix-junit.xml'), matrixJunit(matrix));
    table = `${matrixTable(matrix)}\n`;
  }
  if (await writeExchangeOutputs(merged.reports, args)) return merged.passed ? 0 : 1;
  if (args.json) process.stdout.write(`${JSON.stringify(summary, bigintSafe, 2)}\n`);
  else {
    const failed = merged.reports.filter((r) => !r.passed);
    process.stdout.write(
      `merged ${merged.reports.length} runs from ${merged.inputs.length} result dirs: ${merged.passed ? 'PASS' : 'FAIL'}\n` +
        merged.inputs.map((i) => `  ${i.dir}: ${i.runs} runs${i.shard ? `, shard ${i.shard.index}/${i.shard.count}` : ''}\n`).join('') +
        merged.missing.map((m) => `  MISSING ${m}\n`).join('') +
        failed.map((r) => `  FAIL ${r.scenario} (${r.resultsDir})\n`).join('') +
        table +
        `  merged results: ${args.results} (summary.json, junit.xml, kcidb.json${table ? ', matrix.json, matrix.html' : ''})\n`,
    );
  }
  return merged.passed ? 0 : 1;
}

/** A sort key that puts trixie before trixie-backports before sid before experimental, and local builds last. */
function kernelOrder(spec: string): string {
  const order = ['trixie', 'trixie-backports', 'sid', 'experimental'];
  try {
    const k = parseKernelSpec(spec);
    const key = kernelKey(k);
    const i = k.kind === 'debian' ? order.indexOf(k.suite) : -1;
    return `${String(i < 0 ? 9 : i)}-${key}`;
  } catch {
    return `9-${spec}`;
  }
}
