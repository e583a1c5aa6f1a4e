import { describe, expect, it } from 'vitest';

import { runScenario } from '../../src/scenario/runner.js';
import { resolveScenario } from '../../src/scenario/registry.js';
import { expectPassed, testRuntimeRoot } from '../helpers/lab.js';
import { liveLabQemuPids } from '../helpers/processes.js';
import { scratchDir } from '../helpers/scratch.js';

// CI runs the soak at a reduced count; `tcelab run registration-soak --set cycles=1000` is the full one.
describe('registration soak (reduced count)', () => {
  it('100 register/map/unmap/unregister cycles: no growth in pins, VmLck, fds, windows or controller memory', async () => {
    const root = testRuntimeRoot();
    const { def } = (await resolveScenario('registration-soak'))!;
    const report = await runScenario(def, { resultsDir: scratchDir('res'), runtimeRoot: root, options: { cycles: 100 } });
    expect(report.error).toBeUndefined();
    const slopes = report.checks.filter((c) => c.name.startsWith('soak: '));
    expect(slopes.map((c) => c.name)).toEqual([
      'soak: guest pinned pages per 100 cycles',
      'soak: worker VmLck per 100 cycles',
      'soak: worker file descriptors per 100 cycles',
      'soak: host DMA windows per 100 cycles',
      'soak: controller file descriptors per 100 cycles',
      'soak: controller RSS per 100 cycles',
    ]);
    expect(slopes.filter((c) => !c.pass)).toEqual([]);
    expectPassed(report);
    expect(liveLabQemuPids(root)).toEqual([]);
  });
});
