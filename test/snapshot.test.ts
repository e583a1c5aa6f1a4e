import { describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { runScenario, type ScenarioReport } from '../src/scenario/runner.js';
import { findScenario } from '../src/scenario/registry.js';
import type { ScenarioDefinition } from '../src/scenario/scenario.js';
import { findSnapshot, removeSnapshot } from '../src/snapshot/snapshot.js';
import { testRuntimeRoot } from './helpers/lab.js';
import { liveLabQemuPids } from './helpers/processes.js';
import { packageRoot } from '../src/util/paths.js';

// A machine of this file's own (768 MiB): its snapshot is made, shared and broken here without touching
// the snapshots the other test files restore from.
const prereg = findScenario('prereg-accounting')!;
const own: ScenarioDefinition = { ...prereg, adjustProfile: (p) => ({ ...p, qemu: { ...p.qemu, memoryMiB: 768 } }) };
const run = (sizeMiB: number, root: string) => runScenario(own, { resultsDir: mkdtempSync('/tmp/tcelab-res-'), runtimeRoot: root, options: { sizeMiB } });
const measured = (r: ScenarioReport, prefix: string) => r.checks.find((c) => c.name.startsWith(prefix))?.measured;

describe('labs from a saved, booted machine', () => {
  it('the first lab saves the machine; two labs restored from it at once do not interfere; the restored kernel log covers the boot', async () => {
    const root = testRuntimeRoot();
    const first = await run(16, root);
    const key = first.labStart?.saved ?? (first.labStart?.how === 'restored' ? first.labStart.snapshot : undefined);
    // (A snapshot left by an earlier suite run is fine: it is restored instead of saved.)
    expect(key, JSON.stringify(first.labStart)).toMatch(/^[0-9a-f]{24}$/);
    expect(first.passed).toBe(true);
    expect(await findSnapshot(key!)).toBeDefined();

    const [a, b] = await Promise.all([run(16, root), run(8, root)]);
    for (const [r, mib] of [[a, 16], [b, 8]] as const) {
      expect(r.labStart).toEqual({ how: 'restored', snapshot: key });
      expect(r.checks.filter((c) => c.status === 'fail')).toEqual([]);
      // Each guest accounts its own registration exactly, whatever the other one does.
      expect(measured(r, `VmLck grows by exactly ${mib} MiB`)).toBe(String(mib * 1024));
      expect(measured(r, `FOLL_PIN acquired grows by exactly ${mib} MiB`)).toBe(String((mib * 1024) / 4));
      const console = readFileSync(join(r.resultsDir, 'artifacts', 'console.log'), 'utf8');
      // The boot log saved with the snapshot comes first: the kernel-log verdict covers the boot too.
      expect(console).toMatch(/^\[ +0\.\d+\] [^]*TCELAB-INIT-READY kernel=6\.12\.[^]*\[tcelab: restored from snapshot [0-9a-f]{24} /);
      expect(r.guestKernel).toMatch(/^6\.12\./);
      const lab = JSON.parse(readFileSync(join(r.resultsDir, 'results.json'), 'utf8'));
      expect(lab.labStart.snapshot).toBe(key);
    }
    // The two guests' clocks were set on restore: their samples are the run's own, in order.
    expect(a.samples.filter((s) => s.source === 'guest').length).toBeGreaterThan(5);

    const list = spawnSync(process.execPath, [join(packageRoot, 'dist/cli/main.js'), 'cache', '--json'], { encoding: 'utf8' });
    expect(list.status).toBe(0);
    expect(JSON.parse(list.stdout).snapshots.map((s: { key: string }) => s.key)).toContain(key);
    expect(liveLabQemuPids(root)).toEqual([]);
  });

  it('a snapshot that does not load is dropped and the lab boots cold (and saves a good one)', async () => {
    const root = testRuntimeRoot();
    const warm = await run(8, root);
    const key = warm.labStart?.snapshot ?? warm.labStart?.saved;
    expect(key).toBeDefined();
    writeFileSync((await findSnapshot(key!))!.statePath, 'not a migration stream\n');
    const r = await run(8, root);
    expect(r.labStart?.how).toBe('cold');
    expect(r.labStart?.why).toMatch(/did not load/);
    expect(r.passed).toBe(true);
    expect(r.labStart?.saved).toBe(key);
    const again = await run(8, root);
    expect(again.labStart).toEqual({ how: 'restored', snapshot: key });
    await removeSnapshot(key!);
    expect(liveLabQemuPids(root)).toEqual([]);
  });
});
