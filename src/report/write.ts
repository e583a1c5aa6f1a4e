import { writeFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { ScenarioReport } from '../scenario/scenario.js';
import { bigintSafe } from '../util/json.js';
import { toJunitXml } from './junit.js';
import { renderTimelineSvg } from './timeline-svg.js';

/** results.json (everything), junit.xml (one testcase per check), timeline.svg (pinned memory over time). */
export async function writeReportFiles(report: ScenarioReport): Promise<void> {
  await mkdir(report.resultsDir, { recursive: true });
  await writeFile(join(report.resultsDir, 'results.json'), `${JSON.stringify(report, bigintSafe, 2)}\n`);
  await writeFile(join(report.resultsDir, 'junit.xml'), toJunitXml([report]));
  await writeFile(join(report.resultsDir, 'timeline.svg'), renderTimelineSvg(report));
}
