import type { Check } from '../scenario/checks.js';
import type { ScenarioReport } from '../scenario/scenario.js';

/**
 * KTAP v1 (the kernel's own test output format, Documentation/dev-tools/ktap.rst): a test per run, a nested
 * subtest per check. Known defects and checks that do not apply are `# SKIP` with the defect or the reason named;
 * a failure is followed by diagnostic lines (measured, expected, detail).
 */
const description = (name: string) => name.replace(/#/g, 'no.').replace(/\s+/g, ' ').trim();
const diagnostic = (text: string, indent: string) =>
  text
    .split('\n')
    .filter(Boolean)
    .map((l) => `${indent}# ${l}`);

function checkLines(c: Check, n: number, indent: string): string[] {
  const name = description(c.name);
  if (c.status === 'known-defect') return [`${indent}ok ${n} ${name} # SKIP known defect: ${description(c.knownDefect ?? '')}`];
  if (c.status === 'not-applicable') return [`${indent}ok ${n} ${name} # SKIP not applicable: ${description(c.notApplicable ?? '')}`];
  if (c.status === 'pass') return [`${indent}ok ${n} ${name}`];
  return [
    `${indent}not ok ${n} ${name}`,
    ...diagnostic(`measured ${c.measured}, expected ${c.expected}${c.detail ? `\n${c.detail}` : ''}`, indent),
  ];
}

export function toKtap(reports: ScenarioReport[]): string {
  const lines = ['KTAP version 1', `1..${reports.length}`];
  reports.forEach((r, i) => {
    const indent = '    ';
    lines.push(`${indent}KTAP version 1`, `${indent}# Subtest: ${description(r.scenario)}`, `${indent}1..${r.checks.length}`);
    for (const [k, c] of r.checks.entries()) lines.push(...checkLines(c, k + 1, indent));
    if (r.error) lines.push(...diagnostic(`error: ${r.error}`, ''));
    lines.push(`${r.passed ? 'ok' : 'not ok'} ${i + 1} ${description(r.scenario)}`);
  });
  return `${lines.join('\n')}\n`;
}
