import type { Check } from '../scenario/checks.js';
import type { ScenarioReport } from '../scenario/scenario.js';
import { uniquelyNamed } from '../util/names.js';

/**
 * Scenarios × kernels (× QEMUs): one verdict per check and column, and what changed from one column to the
 * next. Columns are in the order given (oldest kernel first): a known defect that passes on a later column is
 * fixed there, a check that passes on one column and fails on a later one is a regression there.
 */
export type CellStatus = Check['status'] | 'not-run';

export interface MatrixColumn {
  /** kernel key, plus the QEMU's index when several are compared: trixie, experimental, trixie~qemu2 */
  label: string;
  kernel: string;
  qemu?: string;
  /** As the runs recorded it: release, package version, page size. */
  kernelRelease?: string;
  kernelPackage?: string;
  pageSize?: number;
  qemuVersion?: string;
}

export interface MatrixCell {
  status: CellStatus;
  measured?: string;
  expected?: string;
  /** The known defect, the reason it does not apply, or why the scenario did not run here. */
  note?: string;
  /** The run's results dir (artifacts, console log, transcripts). */
  resultsDir?: string;
}

export interface MatrixChange {
  kind: 'fixed' | 'regression' | 'changed';
  /** The column it changed in, and the one before. */
  column: string;
  since: string;
  from: CellStatus;
  to: CellStatus;
  /** Both runs' results dirs. */
  runs: [string | undefined, string | undefined];
}

export interface MatrixRow {
  scenario: string;
  check: string;
  cells: Record<string, MatrixCell>;
  changes: MatrixChange[];
}

export interface Matrix {
  columns: MatrixColumn[];
  scenarios: string[];
  rows: MatrixRow[];
  /** Runs that could not happen on a column, and why (a kernel without what the scenario needs). */
  notRun: Array<{ scenario: string; column: string; why: string }>;
  passed: boolean;
}

/** One run of the matrix: which scenario on which column, and its report (or why it did not run). */
export interface MatrixRun {
  scenario: string;
  column: string;
  report?: ScenarioReport;
  notRunBecause?: string;
}

const transition = (from: CellStatus, to: CellStatus): MatrixChange['kind'] | undefined => {
  if (from === to || from === 'not-run' || to === 'not-run') return undefined;
  if (to === 'pass' && (from === 'known-defect' || from === 'fail')) return 'fixed';
  if (to === 'fail' && (from === 'pass' || from === 'known-defect')) return 'regression';
  return 'changed';
};

export function buildMatrix(columns: MatrixColumn[], runs: MatrixRun[]): Matrix {
  const scenarios = [...new Set(runs.map((r) => r.scenario))];
  const rows = new Map<string, MatrixRow>();
  const rowOf = (scenario: string, check: string) => {
    const key = `${scenario}\u0000${check}`;
    let row = rows.get(key);
    if (!row) {
      row = { scenario, check, cells: {}, changes: [] };
      rows.set(key, row);
    }
    return row;
  };
  for (const run of runs) {
    if (!run.report) continue;
    for (const { item: c, name } of uniquelyNamed(run.report.checks)) {
      rowOf(run.scenario, name).cells[run.column] = {
        status: c.status,
        measured: c.measured,
        expected: c.expected,
        note: c.knownDefect ?? c.notApplicable ?? c.detail,
        resultsDir: run.report.resultsDir,
      };
    }
  }
  // A check a run did not record (the run stopped early, or the kernel lacks the feature) is "not run" there.
  for (const row of rows.values()) {
    for (const col of columns) {
      if (row.cells[col.label]) continue;
      const run = runs.find((r) => r.scenario === row.scenario && r.column === col.label);
      row.cells[col.label] = {
        status: 'not-run',
        note: run?.notRunBecause ?? (run?.report ? 'the run did not reach this check' : 'not in this matrix'),
        resultsDir: run?.report?.resultsDir,
      };
    }
    for (let i = 1; i < columns.length; i++) {
      const a = row.cells[columns[i - 1]!.label]!;
      const b = row.cells[columns[i]!.label]!;
      const kind = transition(a.status, b.status);
      if (kind)
        row.changes.push({
          kind,
          column: columns[i]!.label,
          since: columns[i - 1]!.label,
          from: a.status,
          to: b.status,
          runs: [a.resultsDir, b.resultsDir],
        });
    }
  }
  for (const col of columns) {
    const r = runs.find((x) => x.column === col.label && x.report?.kernel);
    if (r?.report) {
      col.kernelRelease = r.report.kernel?.release;
      col.kernelPackage = r.report.kernel?.source.package
        ? `${r.report.kernel.source.package} ${r.report.kernel.source.version}`
        : r.report.kernel?.source.spec;
      col.pageSize = r.report.kernel?.pageSize;
      col.qemuVersion = r.report.qemuVersion;
    }
  }
  const sorted = [...rows.values()].sort((a, b) => scenarios.indexOf(a.scenario) - scenarios.indexOf(b.scenario));
  return {
    columns,
    scenarios,
    rows: sorted,
    notRun: runs.filter((r) => r.notRunBecause).map((r) => ({ scenario: r.scenario, column: r.column, why: r.notRunBecause! })),
    passed: runs.every((r) => r.notRunBecause || r.report?.passed),
  };
}

const SYMBOL: Record<CellStatus, string> = {
  pass: 'pass',
  fail: 'FAIL',
  'known-defect': 'DEFECT',
  'not-applicable': 'n/a',
  'not-run': '—',
};

/** The matrix as a terminal table: one line per check, a column per kernel, changes marked. */
export function matrixTable(m: Matrix): string {
  const width = Math.min(72, Math.max(20, ...m.rows.map((r) => r.check.length + r.scenario.length + 2)));
  const colW = Math.max(8, ...m.columns.map((c) => c.label.length + 1));
  const head = `${'scenario: check'.padEnd(width)} ${m.columns.map((c) => c.label.padEnd(colW)).join(' ')}`;
  const kernels = m.columns.map((c) =>
    [
      `  ${c.label}: ${c.kernel}`,
      c.kernelRelease ? ` → ${c.kernelRelease}` : '',
      c.kernelPackage ? ` (${c.kernelPackage})` : '',
      c.pageSize ? `, ${c.pageSize / 1024} KiB pages` : '',
      c.qemuVersion ? `, QEMU ${c.qemuVersion}` : '',
    ].join(''),
  );
  const lines = m.rows.map((r) => {
    const name = `${r.scenario}: ${r.check}`;
    const cells = m.columns.map((c) => {
      const change = r.changes.find((x) => x.column === c.label);
      const mark = change ? (change.kind === 'fixed' ? ' ✓fixed' : change.kind === 'regression' ? ' ✗REGRESSION' : ' ~') : '';
      return `${SYMBOL[r.cells[c.label]!.status]}${mark}`.padEnd(colW);
    });
    return `${(name.length > width ? `${name.slice(0, width - 1)}…` : name).padEnd(width)} ${cells.join(' ')}`;
  });
  const changes = m.rows.flatMap((r) =>
    r.changes
      .filter((c) => c.kind !== 'changed')
      .map(
        (c) =>
          `  ${c.kind === 'fixed' ? 'FIXED' : 'REGRESSION'} in ${c.column} (since ${c.since}): ${r.scenario}: ` +
          `${r.check} — ${c.from} → ${c.to}\n      ${c.runs[0] ?? '?'}\n      ${c.runs[1] ?? '?'}`,
      ),
  );
  const notRun = m.notRun.map((n) => `  not run: ${n.scenario} on ${n.column}: ${n.why}`);
  return [
    `kernels:`,
    ...kernels,
    '',
    head,
    ...lines,
    ...(changes.length ? ['', 'changes:', ...changes] : []),
    ...(notRun.length ? ['', ...notRun] : []),
  ].join('\n');
}
