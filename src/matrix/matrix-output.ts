import { xmlEscape } from '../util/xml.js';
import type { CellStatus, Matrix } from './matrix.js';

/** JUnit for CI: a testsuite per kernel (column), a testcase per scenario check; known defects and n/a are skipped. */
export function matrixJunit(m: Matrix): string {
  const suites = m.columns.map((col) => {
    const cases = m.rows.map((r) => {
      const c = r.cells[col.label]!;
      const head = `    <testcase classname="tcelab.${xmlEscape(r.scenario)}" name="${xmlEscape(r.check)}">`;
      const body =
        c.status === 'fail'
          ? `      <failure message="${xmlEscape(`measured ${c.measured}, expected ${c.expected}`)}">${xmlEscape(c.note ?? '')}</failure>\n`
          : c.status === 'pass'
            ? ''
            : `      <skipped message="${xmlEscape(`${c.status}: ${c.note ?? ''}`)}"/>\n`;
      return `${head}\n${body}      <system-out>${xmlEscape(c.resultsDir ?? '')}</system-out>\n    </testcase>`;
    });
    const failures = m.rows.filter((r) => r.cells[col.label]!.status === 'fail').length;
    const skipped = m.rows.filter((r) => !['pass', 'fail'].includes(r.cells[col.label]!.status)).length;
    return (
      `  <testsuite name="tcelab.matrix.${xmlEscape(col.label)}" tests="${m.rows.length}" failures="${failures}" skipped="${skipped}">\n` +
      `    <properties><property name="kernel" value="${xmlEscape(col.kernel)}"/><property name="kernelRelease" ` +
      `value="${xmlEscape(col.kernelRelease ?? '')}"/>` +
      `<property name="pageSize" value="${col.pageSize ?? ''}"/><property name="qemuVersion" value="${xmlEscape(col.qemuVersion ?? '')}"/></properties>\n` +
      `${cases.join('\n')}\n  </testsuite>`
    );
  });
  return `<?xml version="1.0" encoding="UTF-8"?>\n<testsuites name="tcelab matrix">\n${suites.join('\n')}\n</testsuites>\n`;
}

const htmlEscape = (s: string) =>
  s.replace(/[<>&"']/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;', "'": '&#39;' })[c]!);

const CLASS: Record<CellStatus, string> = {
  pass: 'pass',
  fail: 'fail',
  'known-defect': 'defect',
  'not-applicable': 'na',
  'not-run': 'notrun',
};
const LABEL: Record<CellStatus, string> = {
  pass: 'pass',
  fail: 'FAIL',
  'known-defect': 'known defect',
  'not-applicable': 'n/a',
  'not-run': 'not run',
};

/** The matrix as one self-contained HTML page (no external resources): a cell per check and kernel, changes marked. */
export function matrixHtml(m: Matrix, title = 'tcelab kernel matrix'): string {
  const head = m.columns
    .map(
      (c) =>
        `<th data-column="${htmlEscape(c.label)}">${htmlEscape(c.label)}<div class="k">${htmlEscape(c.kernelRelease ?? c.kernel)}` +
        `${c.pageSize ? ` · ${c.pageSize / 1024} KiB pages` : ''}${c.qemuVersion ? ` · QEMU ${htmlEscape(c.qemuVersion)}` : ''}</div></th>`,
    )
    .join('');
  const rows = m.rows
    .map((r) => {
      const cells = m.columns
        .map((c) => {
          const cell = r.cells[c.label]!;
          const change = r.changes.find((x) => x.column === c.label);
          const mark =
            change && change.kind !== 'changed'
              ? `<span class="change ${change.kind}">${change.kind === 'fixed' ? 'fixed here' : 'regression'}</span>`
              : '';
          const tip = [
            cell.measured !== undefined ? `measured ${cell.measured}, expected ${cell.expected}` : '',
            cell.note ?? '',
            cell.resultsDir ?? '',
          ]
            .filter(Boolean)
            .join('\n');
          return `<td class="${CLASS[cell.status]}" title="${htmlEscape(tip)}">${LABEL[cell.status]}${mark}</td>`;
        })
        .join('');
      return `<tr><th class="s">${htmlEscape(r.scenario)}</th><td class="c">${htmlEscape(r.check)}</td>${cells}</tr>`;
    })
    .join('\n');
  const changes = m.rows
    .flatMap((r) =>
      r.changes
        .filter((c) => c.kind !== 'changed')
        .map(
          (c) =>
            `<li class="${c.kind}"><b>${c.kind === 'fixed' ? 'Fixed' : 'Regression'} in ${htmlEscape(c.column)}</b> (since ${htmlEscape(c.since)}): ` +
            `${htmlEscape(r.scenario)}: ${htmlEscape(r.check)} — ${LABEL[c.from]} → ` +
            `${LABEL[c.to]}<br><code>${htmlEscape(c.runs[0] ?? '')}</code><br><code>${htmlEscape(c.runs[1] ?? '')}</code></li>`,
        ),
    )
    .join('\n');
  const notRun = m.notRun.length
    ? `<h2>Not run</h2><ul>${m.notRun.map((n) => `<li>${htmlEscape(n.scenario)} on ${htmlEscape(n.column)}: ${htmlEscape(n.why)}</li>`).join('')}</ul>`
    : '';
  return `<!doctype html>
<html><head><meta charset="utf-8"><title>${htmlEscape(title)}</title>
<style>
body{font:14px system-ui,sans-serif;margin:1.5em}table{border-collapse:collapse}th,td{border:1px solid #ccc;padding:.3em .6em;vertical-align:top}
td.pass{background:#e6f4ea}td.fail{background:#fce8e6;font-weight:bold}td.defect{background:#fef7e0}td.na,td.notrun{color:#777;background:#f5f5f5}
.k{font-weight:normal;font-size:12px;color:#555}.change{display:block;font-size:11px;font-weight:bold}
.change.fixed{color:#137333}.change.regression{color:#c5221f}
th.s{text-align:left;font-weight:normal;color:#555}li.regression{color:#c5221f}li.fixed{color:#137333}code{font-size:11px;color:#555}
</style></head><body>
<h1>${htmlEscape(title)}</h1>
<p id="verdict" class="${m.passed ? 'pass' : 'fail'}">${m.passed ? 'PASS' : 'FAIL'}: ${m.rows.length} checks × ${m.columns.length} columns</p>
<table id="matrix"><thead><tr><th>scenario</th><th>check</th>${head}</tr></thead><tbody>
${rows}
</tbody></table>
<h2>Changes</h2><ul id="changes">${changes || '<li>none</li>'}</ul>
${notRun}
</body></html>
`;
}
