import { describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import type { ScenarioReport } from '../../src/scenario/scenario.js';
import { packageRoot } from '../../src/util/paths.js';
import { judgedNotPassing, testRuntimeRoot } from '../helpers/lab.js';
import { liveLabQemuPids } from '../helpers/processes.js';

/** `tcelab run <scenario> --json` on the emulated lab: the report and the exit status. */
function run(target: string): { report: ScenarioReport; status: number | null; stderr: string } {
  const root = testRuntimeRoot();
  const results = mkdtempSync('/tmp/tcelab-res-');
  const args = ['run', target, '--results', results, '--json'];
  const cli = spawnSync(process.execPath, [join(packageRoot, 'dist/cli/main.js'), ...args], {
    encoding: 'utf8',
    env: { ...process.env, TCELAB_RUNTIME_DIR: root },
    timeout: 280_000,
  });
  if (!cli.stdout.trim()) throw new Error(`tcelab ${args.join(' ')} printed no report: ${cli.stderr.slice(-3000)}`);
  expect(liveLabQemuPids(root)).toEqual([]);
  return { report: JSON.parse(cli.stdout) as ScenarioReport, status: cli.status, stderr: cli.stderr };
}

/**
 * A hostile guest on the emulated lab: the tcelab_hcall module, built from Debian's source of the image's kernel,
 * loaded by the agent; QEMU's handlers give the answers their source promises and a refused call writes nothing.
 */
describe('a hostile guest', () => {
  it('tcelab run hostile-guest: every answer as QEMU 10.0 promises, nothing written where refused', () => {
    const { report, status, stderr } = run('hostile-guest');
    expect({ error: report.error, notPassing: report.checks.filter(judgedNotPassing) }, stderr.slice(-2000)).toEqual({
      error: undefined,
      notPassing: [],
    });
    expect(status).toBe(0);
    expect(report.guestModules?.[0]).toMatchObject({ name: 'tcelab_hcall', source: expect.stringMatching(/^linux-source-\d+\.\d+ /) });
    const answers = report.checks.filter((c) => /^step \d+: (hcall|rtas) /.test(c.name) && !c.name.endsWith('nothing written'));
    expect(answers.length).toBeGreaterThanOrEqual(24);
    expect(report.checks.find((c) => c.name.endsWith('hcall STUFF last entry npages 2'))).toMatchObject({ measured: 'H_PARAMETER' });
    expect(report.checks.find((c) => c.name.endsWith('rtas remove the removed DDW again'))).toMatchObject({ measured: 'parameter error' });
  });

  it('an expectation swapped flips exactly its check: PUT one past the end expected to succeed', () => {
    const file = JSON.parse(readFileSync(join(packageRoot, 'scenarios/hostile-guest.json'), 'utf8'));
    const put = file.steps.find((s: { label?: string }) => s.label === 'PUT one past the end');
    put.expect = 'H_SUCCESS';
    const swapped = join(mkdtempSync('/tmp/tcelab-hostile-'), 'hostile-guest-swapped.json');
    writeFileSync(swapped, JSON.stringify(file));
    const { report, status } = run(swapped);
    expect(report.checks.filter(judgedNotPassing).map((c) => `${c.name}: ${c.measured}`)).toEqual([
      'step 8: hcall PUT one past the end: H_PARAMETER',
    ]);
    expect(status).toBe(1);
  });
});
