import { describe, expect, it } from 'vitest';
import { spawn, spawnSync } from 'node:child_process';

import { join } from 'node:path';
import { runScenario } from '../../src/scenario/runner.js';
import { findProcedure } from '../../src/scenario/registry.js';
import { testRuntimeRoot, runtimeDirsIn } from '../helpers/lab.js';
import { liveLabQemuPids } from '../helpers/processes.js';
import { packageRoot } from '../../src/util/paths.js';
import { scratchDir } from '../helpers/scratch.js';

const cli = join(packageRoot, 'dist/cli/main.js');

describe('PHB and device hotplug: failures and the control socket', () => {
  it('re-plugging a PHB at the same index: round 1 passes, the failing step is named, the oops is caught, the lab is torn down', async () => {
    const root = testRuntimeRoot();
    const report = await runScenario(findProcedure('ddw-hotplug')!, {
      resultsDir: scratchDir('res'),
      runtimeRoot: root,
      options: { repeat: 2, reuseIndex: true },
    });
    expect(report.passed).toBe(false);
    expect(report.error).toMatch(/hotplug step "guest drmgr -c pci -a"/);
    // Round 1 ran clean before the re-plug: every check of it passes (the stale slots: the documented defect),
    // the ones the seeded faults of hotplug.test.ts flip included.
    const round1 = report.checks.filter((c) => c.name.startsWith('round 1: '));
    expect(round1.filter((c) => c.status === 'fail')).toEqual([]);
    for (const n of [
      'registering 2 MiB pins 2 MiB of pages',
      "host view of the new PHB before DDW = the guest's 32-bit window",
      "host view shows the guest's 64-bit window",
      'host view after removing the window = the 32-bit window',
      'no growth in IOMMU groups',
      'no growth in host DMA windows',
      'no growth in guest pinned pages',
    ])
      expect(round1.find((c) => c.name === `round 1: ${n}`)?.status, n).toBe('pass');
    const oops = report.checks.find((c) => c.name.startsWith('guest kernel logged no '));
    expect(oops?.status).toBe('fail');
    expect(oops?.measured).toMatch(/Oops|BUG/);
    expect(liveLabQemuPids(root)).toEqual([]);
    // A failed run keeps its runtime dir as artifacts.
    expect(runtimeDirsIn(root).length).toBe(1);
  });

  it('`tcelab up` + `tcelab hotplug` drive a running lab through its control socket', async () => {
    const root = testRuntimeRoot();
    const env = { ...process.env, TCELAB_RUNTIME_DIR: root };
    const up = spawn(process.execPath, [cli, 'up', '--json'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    const exited = new Promise<number | null>((r) => up.on('exit', (c) => r(c)));
    const ready = await new Promise<{ runtimeDir: string }>((resolve, reject) => {
      let out = '';
      up.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        const line = out.split('\n').find((l) => l.startsWith('{'));
        if (line) resolve(JSON.parse(line));
      });
      up.on('exit', (c) => reject(new Error(`tcelab up exited ${c}`)));
    });
    const hp = (...args: string[]) => {
      const r = spawnSync(process.execPath, [cli, 'hotplug', ...args], { env, encoding: 'utf8', timeout: 120_000 });
      return { status: r.status, out: r.stdout ? JSON.parse(r.stdout) : undefined, err: r.stderr };
    };
    try {
      expect(hp('status').out.runtimeDir).toBe(ready.runtimeDir);
      // The lab's own QMP, which its controller holds: relayed, whether asked as "lab" or by its socket.
      const cliRun = (...args: string[]) => spawnSync(process.execPath, [cli, ...args], { env, encoding: 'utf8', timeout: 60_000 });
      expect(JSON.parse(cliRun('qmp', 'lab', 'query-status').stdout)).toMatchObject({ status: 'running' });
      const bySocket = cliRun('qmp', join(ready.runtimeDir, 'qmp.sock'), 'query-status');
      expect(bySocket.stderr).toMatch(/is held by the controller of this lab; relaying through/);
      expect(JSON.parse(bySocket.stdout)).toMatchObject({ status: 'running' });
      expect(cliRun('hmp', 'lab', 'info version').stdout).toMatch(/^\d+\.\d+\.\d+/);
      expect(hp('phb', 'add', '3').out.phb).toMatchObject({ id: 'hphb3', index: 3, ddw: true, drc: 'PHB 3' });
      const dev = hp('device', 'add', 'hphb3', 'dev0').out.device;
      expect(dev).toMatchObject({ id: 'dev0', drc: 'C196608', address: '0003:00:00.0' });
      const listed = hp('list').out;
      expect(listed.iommuGroups.flatMap((g: { devices: Array<{ address: string }> }) => g.devices.map((d) => d.address))).toContain(
        '0003:00:00.0',
      );
      expect(hp('windows').out.map((w: { phb: string }) => w.phb)).toEqual(expect.arrayContaining(['phb1', 'hphb3']));
      const bad = hp('phb', 'remove', 'nosuch');
      expect(bad.status).toBe(1);
      expect(bad.err).toMatch(/nosuch was not hot-plugged by this controller/);
      expect(hp('device', 'remove', 'dev0').status).toBe(0);
      expect(hp('shutdown').out).toEqual({ stopping: true });
      expect(await exited).toBe(0);
    } finally {
      up.kill('SIGKILL');
    }
    expect(liveLabQemuPids(root)).toEqual([]);
    expect(runtimeDirsIn(root)).toEqual([]);
  });
});
