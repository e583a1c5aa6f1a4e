import { describe, expect, it } from 'vitest';
import { fixProofs, fixProofText } from '../../src/matrix/fix-proof.js';
import { buildMatrix, type MatrixColumn, type MatrixRun } from '../../src/matrix/matrix.js';
import type { ScenarioReport } from '../../src/scenario/scenario.js';

const columns = (): MatrixColumn[] => [
  { label: 'src-6.12.107', kernel: 'debian-source:6.12.107' },
  { label: 'src-6.12.107+patches', kernel: 'debian-source:6.12.107+patches' },
];
type C = { name: string; status: string; note?: string };
const run = (column: string, checks: C[]): MatrixRun => ({
  scenario: 'hostile-guest',
  column,
  report: {
    checks: checks.map((c) => ({
      name: c.name,
      status: c.status,
      knownDefect: c.status === 'known-defect' ? c.note : undefined,
      notApplicable: c.status === 'not-applicable' ? c.note : undefined,
    })),
  } as unknown as ScenarioReport,
});

describe('a patched kernel against the same kernel without its patches', () => {
  it('is proven when known defects turned into passes, calls not issued before are issued and pass, and nothing else changed', () => {
    const m = buildMatrix(columns(), [
      run('src-6.12.107', [
        { name: 'a', status: 'known-defect', note: 'defect 4' },
        { name: 'b', status: 'not-applicable', note: 'not issued: 6.12.107 lacks the fix of defect 4' },
        { name: 'c', status: 'pass' },
        { name: 'orphan', status: 'pass' },
      ]),
      run('src-6.12.107+patches', [
        { name: 'a', status: 'pass' },
        { name: 'b', status: 'pass' },
        { name: 'c', status: 'pass' },
        { name: 'b: nothing written', status: 'pass' },
      ]),
    ]);
    const [p] = fixProofs(m);
    expect(p).toMatchObject({ column: 'src-6.12.107+patches', since: 'src-6.12.107', proven: true, other: [], stillKnown: [] });
    expect(p!.fixed.map((f) => f.check)).toEqual(['a']);
    expect(p!.nowIssued.map((f) => f.check)).toEqual(['b']);
    expect(p!.pathOnly).toEqual([
      { scenario: 'hostile-guest', check: 'orphan', side: 'before' },
      { scenario: 'hostile-guest', check: 'b: nothing written', side: 'after' },
    ]);
    expect(fixProofText(p!)).toMatch(/^fix proof: src-6\.12\.107\+patches against src-6\.12\.107: PROVEN — 1 checks fixed/);
  });

  it('is void when anything else changed, or a known defect is left; columns that are not a source and its patched self prove nothing', () => {
    const m = buildMatrix(columns(), [
      run('src-6.12.107', [
        { name: 'a', status: 'known-defect', note: 'defect 4' },
        { name: 'c', status: 'pass' },
        { name: 'd', status: 'known-defect', note: 'defect 6' },
      ]),
      run('src-6.12.107+patches', [
        { name: 'a', status: 'pass' },
        { name: 'c', status: 'fail' },
        { name: 'd', status: 'known-defect', note: 'defect 6' },
      ]),
    ]);
    const [p] = fixProofs(m);
    expect(p!.proven).toBe(false);
    expect(p!.other).toEqual([{ scenario: 'hostile-guest', check: 'c', from: 'pass', to: 'fail' }]);
    expect(p!.stillKnown.map((s) => s.check)).toEqual(['d']);
    const other = buildMatrix(
      [
        { label: 'trixie', kernel: 'debian:trixie' },
        { label: 'src-6.12.107+patches', kernel: 'debian-source:6.12.107+patches' },
      ],
      [],
    );
    expect(fixProofs(other)).toEqual([]);
  });
});
