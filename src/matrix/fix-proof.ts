import { formatKernelSpec, parseKernelSpec } from '../kernel/kernel-spec.js';
import type { Matrix, MatrixColumn } from './matrix.js';

/**
 * What a patched kernel proves against the same kernel without the patches, the column before it in a matrix
 * (`--kernels debian-source:6.12.107,debian-source:6.12.107+patches`): every check the patches are for turned from a
 * known defect (or a failure) into a pass, the calls not issued on a kernel with a defect issued and passing, and
 * nothing else changed. Proven when something was fixed, nothing else changed and no known defect is left.
 */
export interface FixProof {
  column: string;
  since: string;
  fixed: Array<{ scenario: string; check: string; from: string }>;
  /** Calls a kernel with the defect does not get (they would crash it), issued on the patched one and passing. */
  nowIssued: Array<{ scenario: string; check: string }>;
  /**
   * Checks on one side only, in a scenario the patches fixed something in: the scenario takes another path once the
   * kernel answers right (prereg-accounting checks the orphaned region only where there is one; a call issued now has
   * its "nothing written" check). A pass on one side and no check on the other; a failure there voids the proof.
   */
  pathOnly: Array<{ scenario: string; check: string; side: 'before' | 'after' }>;
  /** Any other change: a proof is void with one. */
  other: Array<{ scenario: string; check: string; from: string; to: string }>;
  /** Checks still reported as known defects on the patched kernel (what the patches do not fix). */
  stillKnown: Array<{ scenario: string; check: string; defect?: string }>;
  proven: boolean;
}

/** The spec without its patch series: debian-source:6.12.107+patches,patches=/p → debian-source:6.12.107. */
const unpatched = (text: string): string => {
  const spec = parseKernelSpec(text, '--kernels');
  return spec.kind === 'debian-source' ? formatKernelSpec({ ...spec, repoPatches: false, patches: [] }) : text;
};

/** A column is a patched form of the one before it when its spec is that spec with a patch series. */
const patchedPairs = (columns: MatrixColumn[]): Array<[MatrixColumn, MatrixColumn]> =>
  columns.flatMap((c, i) => {
    const before = columns[i - 1];
    return before && c.kernel !== before.kernel && unpatched(c.kernel) === before.kernel && c.qemu === before.qemu ? [[before, c]] : [];
  });

const NOT_ISSUED = /^not issued: /;

export function fixProofs(matrix: Matrix): FixProof[] {
  return patchedPairs(matrix.columns).map(([before, after]) => {
    const proof: FixProof = {
      column: after.label,
      since: before.label,
      fixed: [],
      nowIssued: [],
      pathOnly: [],
      other: [],
      stillKnown: [],
      proven: false,
    };
    const oneSided: Array<{ scenario: string; check: string; side: 'before' | 'after' }> = [];
    for (const row of matrix.rows) {
      const a = row.cells[before.label];
      const b = row.cells[after.label];
      if (!a || !b) continue;
      const at = { scenario: row.scenario, check: row.check };
      if (b.status === 'known-defect') proof.stillKnown.push({ ...at, defect: b.note });
      if (a.status === b.status) continue;
      if (b.status === 'pass' && (a.status === 'known-defect' || a.status === 'fail')) proof.fixed.push({ ...at, from: a.status });
      else if (b.status === 'pass' && a.status === 'not-applicable' && NOT_ISSUED.test(a.note ?? '')) proof.nowIssued.push(at);
      else if (a.status === 'not-run' && b.status === 'pass') oneSided.push({ ...at, side: 'after' });
      else if (a.status === 'pass' && b.status === 'not-run') oneSided.push({ ...at, side: 'before' });
      else proof.other.push({ ...at, from: a.status, to: b.status });
    }
    // A check on one side only is the fix's other path where the scenario had something fixed; elsewhere it is a change.
    const fixedIn = new Set([...proof.fixed, ...proof.nowIssued].map((f) => f.scenario));
    for (const o of oneSided) {
      const [from, to] = o.side === 'after' ? ['not-run', 'pass'] : ['pass', 'not-run'];
      if (fixedIn.has(o.scenario)) proof.pathOnly.push(o);
      else proof.other.push({ scenario: o.scenario, check: o.check, from: from!, to: to! });
    }
    proof.proven = proof.fixed.length > 0 && proof.other.length === 0 && proof.stillKnown.length === 0;
    return proof;
  });
}

/** The proof in words, for the matrix's output. */
export function fixProofText(p: FixProof): string {
  const lines = [
    `fix proof: ${p.column} against ${p.since}: ${p.proven ? 'PROVEN' : 'NOT PROVEN'} — ${p.fixed.length} checks fixed, ` +
      `${p.nowIssued.length} calls issued now (not issued on a kernel with the defect), ${p.pathOnly.length} checks on the ` +
      `fixed path only, ${p.other.length} other changes, ` +
      `${p.stillKnown.length} known defects left`,
    ...p.fixed.map((f) => `  fixed (was ${f.from}): ${f.scenario}: ${f.check}`),
    ...p.nowIssued.map((f) => `  issued and passing: ${f.scenario}: ${f.check}`),
    ...p.pathOnly.map((f) => `  ${f.side === 'after' ? 'only with the fix' : 'only with the defect'}: ${f.scenario}: ${f.check}`),
    ...p.other.map((f) => `  CHANGED ${f.from} → ${f.to}: ${f.scenario}: ${f.check}`),
    ...p.stillKnown.map((f) => `  still a known defect: ${f.scenario}: ${f.check}${f.defect ? ` (${f.defect})` : ''}`),
  ];
  return lines.join('\n');
}
