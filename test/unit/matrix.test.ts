import { describe, expect, it } from 'vitest';
import { buildMatrix, matrixTable, type MatrixColumn } from '../../src/matrix/matrix.js';
import { matrixHtml, matrixJunit } from '../../src/matrix/matrix-output.js';
import type { Check } from '../../src/scenario/checks.js';
import type { ScenarioReport } from '../../src/scenario/scenario.js';

const check = (name: string, status: Check['status'], extra: Partial<Check> = {}): Check => ({
  name,
  pass: status !== 'fail',
  status,
  expected: 'x',
  measured: 'y',
  atMs: 0,
  ...extra,
});
const report = (dir: string, release: string, checks: Check[]): ScenarioReport =>
  ({
    scenario: 's',
    profile: 'emulated',
    options: {},
    passed: checks.every((c) => c.status !== 'fail'),
    resultsDir: dir,
    checks,
    kernel: {
      release,
      pageSize: 4096,
      config: {},
      modules: {},
      source: { spec: 'debian:x', package: `linux-image-${release}`, version: '1' },
    },
    qemuVersion: '7.2.22',
  }) as unknown as ScenarioReport;

describe('kernel matrix', () => {
  const columns = (): MatrixColumn[] => [
    { label: 'old', kernel: 'debian:trixie' },
    { label: 'new', kernel: 'debian:experimental' },
  ];
  const runs = [
    {
      scenario: 'prereg',
      column: 'old',
      report: report('/r/old', '6.12', [
        check('unregister while mapped', 'known-defect', { knownDefect: 'defect 1' }),
        check('exact pins', 'pass'),
        check('64K mapping', 'not-applicable', { notApplicable: '64 KiB pages' }),
      ]),
    },
    {
      scenario: 'prereg',
      column: 'new',
      report: report('/r/new', '7.3', [
        check('unregister while mapped', 'pass'),
        check('exact pins', 'fail'),
        check('64K mapping', 'pass'),
      ]),
    },
    { scenario: 'hotplug', column: 'old', report: report('/r/h-old', '6.12', [check('round 1', 'pass')]) },
    { scenario: 'hotplug', column: 'new', notRunBecause: 'kernel 7.3 lacks module rpadlpar_io' },
  ];

  it('marks a known defect that passes on a newer kernel fixed there, and a pass that fails a regression, with both runs', () => {
    const m = buildMatrix(columns(), runs);
    const row = (c: string) => m.rows.find((r) => r.check === c)!;
    expect(row('unregister while mapped').changes).toEqual([
      { kind: 'fixed', column: 'new', since: 'old', from: 'known-defect', to: 'pass', runs: ['/r/old', '/r/new'] },
    ]);
    expect(row('exact pins').changes[0]).toMatchObject({ kind: 'regression', from: 'pass', to: 'fail' });
    expect(row('64K mapping').changes[0]).toMatchObject({ kind: 'changed', from: 'not-applicable', to: 'pass' });
    expect(row('round 1').cells.new).toMatchObject({ status: 'not-run', note: 'kernel 7.3 lacks module rpadlpar_io' });
    expect(m.columns[1]).toMatchObject({ kernelRelease: '7.3', pageSize: 4096, qemuVersion: '7.2.22' });
    expect(m.passed).toBe(false);
    const table = matrixTable(m);
    expect(table).toMatch(/prereg: unregister while mapped\s+DEFECT\s+pass ✓fixed/);
    expect(table).toMatch(/REGRESSION in new \(since old\): prereg: exact pins — pass → fail\n\s+\/r\/old\n\s+\/r\/new/);
    expect(table).toMatch(/not run: hotplug on new: kernel 7\.3 lacks module rpadlpar_io/);
  });

  it('writes a JUnit suite per kernel and a self-contained page', () => {
    const m = buildMatrix(columns(), runs);
    const junit = matrixJunit(m);
    expect(junit.match(/<testsuite /g)).toHaveLength(2);
    expect(junit).toMatch(/<testsuite name="tcelab.matrix.new" tests="4" failures="1" skipped="1">/);
    const html = matrixHtml(m);
    expect(html).not.toMatch(/(src|href)=["']?(https?:)?\/\//);
    expect(html).toMatch(/<span class="change fixed">fixed here<\/span>/);
    expect(html).toMatch(/<span class="change regression">regression<\/span>/);
  });

  it('keeps a check that a run records twice under the same name as two rows', () => {
    const twice = (dir: string) => report(dir, '6.12', [check('unmap it', 'pass'), check('unmap it', 'fail')]);
    const m = buildMatrix(columns(), [
      { scenario: 'ddw', column: 'old', report: twice('/o') },
      { scenario: 'ddw', column: 'new', report: twice('/n') },
    ]);
    expect(m.rows.map((r) => [r.check, r.cells.old!.status, r.cells.new!.status])).toEqual([
      ['unmap it', 'pass', 'pass'],
      ['unmap it (2)', 'fail', 'fail'],
    ]);
  });
});
