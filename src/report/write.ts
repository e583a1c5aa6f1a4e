import { writeFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { ScenarioReport } from '../scenario/runner.js';
import { toJunitXml } from './junit.js';
import { renderTimelineSvg } from './timeline-svg.js';

export const bigintSafe = (_k: string, v: unknown) => (typeof v === 'bigint' ? `0x${v.toString(16)}` : v === Infinity ? 'unlimited' : v);

/** results.json (everything), junit.xml (one testcase per check), timeline.svg (pinned memory over time). */
export async function writeReportFiles(report: ScenarioReport): Promise<void> {
  await mkdir(report.resultsDir, { recursive: true });
  await writeFile(join(report.resultsDir, 'results.json'), `${JSON.stringify(report, bigintSafe, 2)}\n`);
  await writeFile(join(report.resultsDir, 'junit.xml'), toJunitXml([report]));
  await writeFile(join(report.resultsDir, 'timeline.svg'), renderTimelineSvg(report));
}
