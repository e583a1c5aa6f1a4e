import { describe, expect, it } from 'vitest';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { packageRoot } from '../../src/util/paths.js';
import { judgedNotPassing, runScenarioCli } from '../helpers/lab.js';
import { scratchDir } from '../helpers/scratch.js';

/**
 * A hostile guest on the emulated lab: the tcelab_hcall module, built from Debian's source of the image's kernel,
 * loaded by the agent; QEMU's handlers give the answers their source promises and a refused call writes nothing.
 */
describe('a hostile guest', () => {
  it('tcelab run hostile-guest: every answer as QEMU 10.0 promises, nothing written where refused', () => {
    const { report, status, stderr } = runScenarioCli('hostile-guest', [], 280_000);
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
    const swapped = join(scratchDir('hostile'), 'hostile-guest-swapped.json');
    writeFileSync(swapped, JSON.stringify(file));
    const { report, status } = runScenarioCli(swapped, [], 280_000);
    expect(report.checks.filter(judgedNotPassing).map((c) => `${c.name}: ${c.measured}`)).toEqual([
      'step 8: hcall PUT one past the end: H_PARAMETER',
    ]);
    expect(status).toBe(1);
  });
});
