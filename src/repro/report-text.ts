import type { ScenarioReport } from '../scenario/scenario.js';
import type { Check } from '../scenario/checks.js';
import type { KernelReport } from '../scenario/kernel-log.js';
import type { Matrix } from '../matrix/matrix.js';
import type { ReproRecipe } from './recipes.js';
import { stepChecks, type ReproStep } from './steps-file.js';

/** Where the check was seen on each kernel of a matrix, or of the one run. */
export interface KernelOutcome {
  kernel: string;
  pageSize?: number;
  outcome: 'reproduces' | 'does not reproduce' | 'not run';
  observed?: string;
  source: string;
}

export interface ReportInputs {
  recipe: ReproRecipe;
  check: string;
  options: Record<string, unknown>;
  steps: ReproStep[];
  /** The run the bundle was cut from (absent for `--scenario`). */
  report?: ScenarioReport;
  kernelReports: KernelReport[];
  /** Where the kernel reports come from when not from this run: another run of the matrix (its kernel). */
  kernelReportsFrom?: string;
  kernels: KernelOutcome[];
  /** The fixes the bundle carries (patches/<base>/<file>): the repository's patches for the recipe's defect. */
  patches?: Array<{ base: string; file: string }>;
}

/** The matrix's cells for the recipe's checks, one line per column: reproduces where any of them is not a pass. */
export function outcomesFromMatrix(matrix: Matrix, recipe: ReproRecipe, check: string, source: string): KernelOutcome[] {
  return matrix.columns.map((col) => {
    const rows = matrix.rows.filter((r) => r.scenario === recipe.scenario && recipe.checks.includes(r.check));
    const cells = rows.map((r) => ({ check: r.check, cell: r.cells[col.label] }));
    const own = cells.find((c) => c.check === check)?.cell;
    const bad = cells.filter((c) => c.cell && (c.cell.status === 'fail' || c.cell.status === 'known-defect'));
    const ran = cells.some((c) => c.cell && c.cell.status !== 'not-run');
    return {
      kernel: `${col.kernelRelease ?? col.kernel}${col.kernelPackage ? ` (${col.kernelPackage.split(' ').at(-1)})` : ''}`,
      pageSize: col.pageSize,
      outcome: !ran ? 'not run' : bad.length ? 'reproduces' : 'does not reproduce',
      observed: own?.measured !== undefined ? `observed ${own.measured}, expected ${own.expected}` : undefined,
      source,
    };
  });
}

const pages = (n?: number) => (n ? `, ${n / 1024} KiB pages` : '');

/** Mailing-list width: prose is wrapped at 78 columns, continuation lines indented under the text (logs are not wrapped). */
export function wrap(line: string, width = 78): string[] {
  if (line.length <= width) return [line];
  const indent = ' '.repeat((/^(\s*(?:\d+\. )?)/.exec(line)?.[1] ?? '').length);
  const out: string[] = [];
  let current = '';
  for (const word of line.trim().split(' ')) {
    const head = current ? `${current} ${word}` : `${out.length ? indent : line.slice(0, line.length - line.trimStart().length)}${word}`;
    if (head.length > width && current) {
      out.push(current);
      current = `${indent}${word}`;
    } else current = head;
  }
  if (current) out.push(current);
  return out;
}

/** A check as the report says it: a kernel-log check's measured value is its reports' first lines joined; the first one is enough here. */
function checkLines(c: Check): string[] {
  const measured = c.measured
    .split(' | ')[0]!
    .replace(/^(\w+): \1: /, '$1: ')
    .replace(/^success \{.*\}$/, 'success (the ioctl returned 0)');
  return [`  ${c.name}`, ...wrap(`      expected ${c.expected}, observed ${measured}${c.detail ? ` (${c.detail})` : ''}`)];
}

/** Register dumps say little to a reader of the report; the NIP, LR and call trace stay. */
const REGISTER_LINE = /^(GPR\d\d:|Code: |CFAR: |MSR: |REGS: )/;

/** The report a kernel maintainer reads: plain text, 100 columns at most where tcelab writes it, no markup. */
export function reportText(r: ReportInputs): string {
  const { recipe, report } = r;
  const relevant = report?.checks.filter((c) => recipe.checks.includes(c.name) && c.status !== 'pass') ?? [];
  const out: string[] = [];
  out.push(`Subject: ${recipe.subject}`, '');
  out.push(
    ...wrap(
      `Found by tcelab (scenario ${recipe.scenario}, check "${r.check}")${report ? ` on ${report.guestKernel ?? report.kernel?.release}` : ''}. ` +
        'The bundle next to this report reproduces it without tcelab: see "Reproducer" below.',
    ),
    '',
  );
  out.push('What was done', ...recipe.what(r.options).flatMap((w, i) => wrap(`  ${i + 1}. ${w}`)), '');
  if (report) {
    out.push(
      ...wrap(
        `Expected vs observed (${report.guestKernel ?? report.kernel?.release}${pages(report.kernel?.pageSize)}, ` +
          `QEMU ${report.qemuVersion ?? '?'} pseries, ${report.startedAt.slice(0, 10)})`,
      ),
      ...relevant.flatMap(checkLines),
      '',
    );
  } else {
    out.push('Expected', ...stepChecks(r.steps).map((c) => `  ${c}`), '');
  }
  const known = relevant.find((c) => c.knownDefect)?.knownDefect;
  if (known) out.push('What tcelab knows about it', ...wrap(`  ${known}`), '');
  if (r.kernels.length) {
    out.push(`Kernels (${[...new Set(r.kernels.map((k) => k.source))].join(', ')})`);
    for (const k of r.kernels) out.push(`  ${k.outcome.padEnd(19)} ${k.kernel}${pages(k.pageSize)}`);
    out.push('');
  }
  if (r.kernelReports.length) {
    out.push(
      r.kernelReportsFrom ? `Kernel log (from the ${r.kernelReportsFrom} run of the matrix: this run's console has none)` : 'Kernel log',
    );
    for (const k of r.kernelReports.slice(0, 2))
      out.push(`  ${k.line}`, ...k.excerpt.filter((l) => !REGISTER_LINE.test(l)).map((l) => `  ${l}`));
    out.push('');
  }
  const config = report?.kernel?.config ?? {};
  if (recipe.config.length) {
    out.push('Kernel config');
    for (const name of recipe.config) out.push(`  CONFIG_${name}=${config[name] ?? '(not recorded)'}`);
    out.push('');
  }
  out.push('Source lines involved');
  for (const s of recipe.sources) out.push(`  ${s.path}: ${s.fn}`, ...wrap(`      ${s.why}`));
  out.push(
    '',
    'Reproducer',
    '  As root, on a POWER host or pseries guest with the VFIO sPAPR modules and',
    '  a device you can give to vfio-pci (bound to vfio-pci for the run, then',
    '  given back):',
    '      sh run.sh <PCI address>     (without an address it lists candidates)',
    '  It runs steps.jsonl with the static ppc64le tcelab-agent and prints KTAP:',
    '  a line per check, with expected and observed values. Exit 1: the defect',
    '  reproduced; 0: every check passed; 2: it could not run.',
    '',
  );
  if (r.patches?.length) {
    out.push(
      'Fix',
      ...wrap(
        `  The bundle carries the fix (git format-patch files, applied in order after the ones numbered before them in ` +
          `tcelab's kernel-patches/<base>/, with git am): with it the reproducer passes.`,
      ),
      ...r.patches.map((p) => `      patches/${p.base}/${p.file}`),
      '',
    );
  }
  return `${out.join('\n')}\n`;
}
