import { describe, expect, it } from 'vitest';
import { appendFileSync } from 'node:fs';
import { emulatedLabInputs } from '../helpers/lab.js';
import { loadProfile, type Profile } from '../../src/qemu/profile.js';
import { ProcessScanner } from '../../src/probes/host-attribution.js';
import { CheckRecorder } from '../../src/scenario/checks.js';
import { judgeHostKernelLog } from '../../src/scenario/run/host-kernel-log.js';
import { MachineLabHost } from '../../src/scenario/run/machine-lab-host.js';
import { silentProgress } from '../../src/util/progress.js';

/** This machine as the lab host of `profile`, as a run opens it (its kernel-log cursor taken now). */
async function machineLabHost(profile: Profile): Promise<MachineLabHost> {
  return new MachineLabHost(profile, (await emulatedLabInputs()).image, {
    progress: silentProgress,
    scanner: new ProcessScanner(() => undefined),
    labCgroup: () => undefined,
    phase: () => {},
    observeLab: () => {},
  });
}

async function hostKernelVerdict(labHost: MachineLabHost) {
  const checks = new CheckRecorder(silentProgress);
  await judgeHostKernelLog(labHost, checks);
  return checks.checks[0]!;
}

// This machine's kernel log, read for real from /dev/kmsg: the reader a real POWER lab host (lab-host-vfio) uses.
describe("the host kernel-log verdict on this machine's kernel", () => {
  it('finds a report this kernel logs during the run, and nothing logged before it', async () => {
    // lab-host-vfio's kind of lab (KVM, a device passed through): this machine's kernel is under test.
    const profile = await loadProfile('lab-host-vfio', { ...process.env, TCELAB_VFIO_HOST: '0000:00:00.0' });
    const marker = `tcelab-kmsg-${process.pid}-${Date.now()}`;
    // Logged before the run began: not the run's.
    appendFileSync('/dev/kmsg', `<4>WARNING: CPU: 0 PID: ${process.pid} at tcelab/before.c:1 ${marker}_before\n`);
    const labHost = await machineLabHost(profile);
    expect((await hostKernelVerdict(labHost)).status).toBe('pass');
    // The seeded fault: a WARNING report of this kernel, during the run.
    appendFileSync('/dev/kmsg', `<4>WARNING: CPU: 0 PID: ${process.pid} at tcelab/during.c:2 ${marker}_during\n`);
    const verdict = await hostKernelVerdict(labHost);
    expect(verdict.status).toBe('fail');
    expect(String(verdict.measured)).toMatch(new RegExp(`${marker}_during`));
    expect(String(verdict.measured)).not.toMatch(new RegExp(`${marker}_before`));
    expect(verdict.detail).toMatch(/\(\/dev\/kmsg\) since the run began \(QEMU runs the lab under KVM in this kernel\)/);
  });

  it('is not judged, with why, on the emulated lab (TCG, emulated devices: this kernel is not under test)', async () => {
    const verdict = await hostKernelVerdict(await machineLabHost(await loadProfile('emulated')));
    expect(verdict.status).toBe('not-applicable');
    expect(verdict.notApplicable).toMatch(/this machine's kernel is not under test here .* no KVM and no VFIO/);
  });
});
