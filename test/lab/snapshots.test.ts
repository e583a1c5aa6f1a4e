import { beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { runScenario } from '../../src/scenario/runner.js';
import { findProcedure } from '../../src/scenario/registry.js';
import type { ScenarioReport } from '../../src/scenario/scenario.js';
import { stageDebianQemu } from '../../src/qemu/stage-qemu.js';
import { testRuntimeRoot, runtimeDirsIn } from '../helpers/lab.js';
import { liveLabQemuPids } from '../helpers/processes.js';

/**
 * Labs restored from a saved, booted machine, with a QEMU that restores a TCG guest faithfully (8.2 on; the
 * host's is 7.2): Debian trixie's, staged from its packages as `--qemu debian:trixie` does. Every built-in
 * scenario restored is run by scripts/ci-slow-checks.sh (`tcelab run --all --qemu debian:trixie`).
 */
describe('labs from a saved, booted machine', () => {
  let qemu: string;
  beforeAll(async () => {
    qemu = (await stageDebianQemu('debian:trixie')).binary;
  }, 300_000);

  const run = (name: string, root: string, extra: { snapshots?: 'off' } = {}) =>
    runScenario(findProcedure(name)!, { resultsDir: mkdtempSync('/tmp/tcelab-res-'), runtimeRoot: root, qemu, ...extra });
  const failed = (r: ScenarioReport) => r.checks.filter((c) => c.status === 'fail').map((c) => `${c.name}: ${c.measured}`);

  it('two labs restored from one snapshot at the same time both pass and say so; --cold boots cold', async () => {
    const root = testRuntimeRoot();
    // The machine's first lab boots cold and saves it (or, with a warm cache, is restored itself).
    const first = await run('ddw-windows', root);
    expect(failed(first)).toEqual([]);
    expect(first.qemuVersion).toMatch(/^10\./);
    const key = first.labStart?.saved ?? first.labStart?.snapshot;
    expect(key, JSON.stringify(first.labStart)).toMatch(/^[0-9a-f]{24}$/);

    const [a, b] = await Promise.all([run('prereg-accounting', root), run('guest-release', root)]);
    for (const r of [a, b]) {
      expect(r.error).toBeUndefined();
      expect(failed(r)).toEqual([]);
      expect(r.labStart).toMatchObject({ how: 'restored', snapshot: key });
      // How fast is the bench's to say (restored vs cold vs floor, side by side), not a timed test's.
      // The kernel-log verdict reads the boot log saved with the snapshot, then what this lab's guest printed.
      const console = readFileSync(join(r.resultsDir, 'artifacts', 'console.log'), 'utf8');
      expect(console).toMatch(new RegExp(`TCELAB-INIT-READY kernel=6\\.12[\\s\\S]*\\[tcelab: restored from snapshot ${key}`));
    }
    // Defect 1 reproduces on a restored guest exactly as on a cold one.
    expect(a.checks.filter((c) => c.status === 'known-defect').length).toBeGreaterThanOrEqual(3);

    const cold = await run('ddw-windows', root, { snapshots: 'off' });
    expect(failed(cold)).toEqual([]);
    expect(cold.labStart).toMatchObject({ how: 'cold', why: 'a cold boot was asked for (--cold)' });
    expect(liveLabQemuPids(root)).toEqual([]);
    expect(runtimeDirsIn(root)).toEqual([]);
  });
});
