import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { Lab } from '../../src/lab/lab.js';
import { emulatedLabInputs, testRuntimeRoot, runtimeDirsIn, TEST_ROOT_PREFIX } from '../helpers/lab.js';
import { liveLabQemuPids } from '../helpers/processes.js';
import { packageRoot } from '../../src/util/paths.js';

describe('emulated lab boot', () => {
  it('boots the Debian 6.12 guest to init and powers it off cleanly over QMP', async () => {
    const root = testRuntimeRoot();
    const { profile, image } = await emulatedLabInputs();
    const lab = await Lab.launch(profile, { image, runtimeRoot: root });
    try {
      const init = await lab.waitForGuestInit();
      expect(init.kernelRelease).toBe(image.manifest.kernelRelease);
      expect(init.kernelRelease).toMatch(/^6\.12\./);
      expect(init.machine).toBe('ppc64le');
      expect((await lab.qmp.queryStatus()).status).toBe('running');
      const report = await lab.shutdown('powerdown');
      expect(report.effective).toBe('powerdown');
      expect(report.escalations).toEqual([]);
      expect(report.shutdownEvent).toMatchObject({ guest: true, reason: 'guest-shutdown' });
      expect(report.exit).toMatchObject({ code: 0, signal: null });
      // The guest kernel itself powered off (not QEMU killed from outside).
      expect(lab.process.console.tail(50)).toMatch(/reboot: Power down/);
    } finally {
      await lab.dispose();
    }
    expect(liveLabQemuPids(root)).toEqual([]);
    expect(runtimeDirsIn(root)).toEqual([]);
  });

  it('`tcelab run` boots, prints the guest kernel and leaves nothing behind', () => {
    const root = mkdtempSync(TEST_ROOT_PREFIX);
    const r = spawnSync(process.execPath, [join(packageRoot, 'dist/cli/main.js'), 'run', 'emulated', '--cold'], {
      env: { ...process.env, TCELAB_RUNTIME_DIR: root },
      encoding: 'utf8',
      timeout: 150_000,
    });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/lab emulated: PASS/);
    expect(r.stdout).toMatch(/guest kernel: +6\.12\.\d+\+deb\d+-powerpc64le/);
    expect(r.stderr).toMatch(/boot the guest to init/);
    expect(r.stdout).toMatch(/started: +cold \(a cold boot was asked for/);
    expect(liveLabQemuPids(root)).toEqual([]);
    expect(runtimeDirsIn(root)).toEqual([]);
    rmSync(root, { recursive: true, force: true });
  });

  it('a QEMU that cannot start gives a clear error and keeps its artifacts', async () => {
    const root = testRuntimeRoot();
    const { profile, image } = await emulatedLabInputs();
    const broken = { ...profile, qemu: { ...profile.qemu, extraArgs: ['-device', 'no-such-device'] } };
    const err = await Lab.launch(broken, { image, runtimeRoot: root }).catch((e: unknown) => e);
    expect((err as Error).message).toMatch(/exited .* before QMP was up: .*no-such-device/);
    const kept = runtimeDirsIn(root);
    expect(kept).toHaveLength(1);
    expect(existsSync(join(kept[0]!, 'qemu-stderr.log'))).toBe(true);
    expect(liveLabQemuPids(root)).toEqual([]);
  });
});
