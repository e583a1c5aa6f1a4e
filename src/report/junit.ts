import type { ScenarioReport } from '../scenario/scenario.js';
import { xmlEscape } from '../util/xml.js';

/** JUnit XML for Jenkins/GitLab: one testsuite per run, one testcase per check; known defects are skipped with the defect named. */
export function toJunitXml(reports: ScenarioReport[]): string {
  const suites = reports.map((r) => {
    const failures = r.checks.filter((c) => c.status === 'fail').length;
    const skipped = r.checks.filter((c) => c.status === 'known-defect' || c.status === 'not-applicable').length;
    const cases = r.checks.map((c) => {
      const classname = `tcelab.${xmlEscape(r.scenario)}.${xmlEscape(r.profile)}`;
      const head = `    <testcase classname="${classname}" name="${xmlEscape(c.name)}" time="${(c.atMs / 1000).toFixed(3)}">`;
      const out = `      <system-out>${xmlEscape(`measured ${c.measured}; expected ${c.expected}${c.detail ? `; ${c.detail}` : ''}`)}</system-out>`;
      if (c.status === 'fail') {
        const message = xmlEscape(`measured ${c.measured}, expected ${c.expected}`);
        return `${head}\n      <failure message="${message}">${xmlEscape(c.detail ?? '')}</failure>\n${out}\n    </testcase>`;
      }
      if (c.status === 'not-applicable')
        return `${head}\n      <skipped message="${xmlEscape(`not applicable: ${c.notApplicable}`)}"/>\n${out}\n    </testcase>`;
      if (c.status === 'known-defect')
        return `${head}\n      <skipped message="${xmlEscape(`known defect: ${c.knownDefect}`)}"/>\n${out}\n    </testcase>`;
      return `${head}\n${out}\n    </testcase>`;
    });
    const props = [
      ['guestKernel', r.guestKernel],
      ['qemuVersion', r.qemuVersion],
      ['resultsDir', r.resultsDir],
      ['error', r.error],
    ]
      .filter(([, v]) => v)
      .map(([k, v]) => `      <property name="${k}" value="${xmlEscape(String(v))}"/>`);
    return (
      `  <testsuite name="${xmlEscape(`${r.scenario} (${r.profile})`)}" tests="${r.checks.length}" failures="${failures}" ` +
      `errors="${r.error ? 1 : 0}" skipped="${skipped}" time="${(r.durationMs / 1000).toFixed(3)}" ` +
      `timestamp="${r.startedAt}">\n    <properties>\n${props.join('\n')}\n    </properties>\n${cases.join('\n')}\n ` +
      ` </testsuite>`
    );
  });
  return `<?xml version="1.0" encoding="UTF-8"?>\n<testsuites name="tcelab">\n${suites.join('\n')}\n</testsuites>\n`;
}
