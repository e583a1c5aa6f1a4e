import { beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { AgentHost } from '../../src/host/agent-host.js';
import { VfioPciBinder } from '../../src/host/vfio-binder.js';
import { runDoctor } from '../../src/doctor/doctor.js';
import { loadProfile } from '../../src/qemu/profile.js';
import { useBootedLab } from '../helpers/booted-lab.js';
import { emulatedLabInputs, testRuntimeRoot } from '../helpers/lab.js';
import { liveLabQemuPids } from '../helpers/processes.js';
import { Lab } from '../../src/lab/lab.js';
import { packageRoot } from '../../src/util/paths.js';
import { sweepStaleLabs } from '../../src/lab/sweep.js';
import { mkdirSync, writeFileSync, readdirSync, existsSync } from 'node:fs';
import { scratchDir } from '../helpers/scratch.js';

const cli = join(packageRoot, 'dist/cli/main.js');

describe('doctor on this machine', () => {
  it('says the emulated profile can run and the lab-host profile cannot, and why', () => {
    const emu = spawnSync(process.execPath, [cli, 'doctor', '--profile', 'emulated'], { encoding: 'utf8' });
    expect(emu.status).toBe(0);
    expect(emu.stdout).toMatch(/profile emulated on host: can run here/);
    // The profile's QEMU as its labs run it: staged from Debian trixie.
    expect(emu.stdout).toMatch(/ok {3}QEMU binary: debian:trixie \(staged: \/\S+\/qemu-system-ppc64\) \d+\.\d+/);
    const env = { ...process.env };
    delete env.TCELAB_VFIO_HOST;
    const lab = spawnSync(process.execPath, [cli, 'doctor', '--profile', 'lab-host-vfio'], { encoding: 'utf8', env });
    expect(lab.status).toBe(1);
    expect(lab.stdout).toMatch(/cannot run here/);
    if (process.arch === 'x64')
      expect(lab.stdout).toMatch(/FAIL KVM for pseries: this machine is x86_64: KVM runs a pseries guest only on a POWER host/);
    expect(lab.stdout).toMatch(/FAIL TCELAB_VFIO_HOST: not set/);
  });
});

// The host-side sysfs code, run for real inside the guest, whose kernel has IOMMU groups and vfio-pci.
describe('doctor and the vfio-pci binder inside the guest (through the agent)', () => {
  const booted = useBootedLab();
  let host: AgentHost;
  beforeAll(() => {
    host = new AgentHost(booted.agent);
  });

  it('reports the device, its viable IOMMU group, /dev/vfio, and binds and restores it', async () => {
    const profile = await loadProfile('lab-host-vfio', { TCELAB_VFIO_HOST: '0001:00:00.0' });
    const agentPid = (await host.agent.info()).agentPid;
    const before = await runDoctor(host, profile, { skipQemu: true, pid: agentPid });
    const by = (name: string) => before.findings.find((f) => f.check === name);
    // The emulated guest is a pSeries guest without kvm_hv (the base image does not carry it): the doctor says so and why.
    expect(by('KVM for pseries')).toMatchObject({
      status: 'fail',
      detail: expect.stringMatching(
        /^no KVM-HV: kvm_hv is not loaded; this machine is a pSeries guest \(KVM here needs nested HV from its parent\)/,
      ),
      fix: expect.stringMatching(/cap-nested-hv=on/),
    });
    expect(by('/dev/vfio')?.status).toBe('ok');
    expect(by('device 0001:00:00.0')?.detail).toMatch(/bound to no driver/);
    expect(by('IOMMU group 1')).toMatchObject({ status: 'ok' });
    expect(by('IOMMU group 1')?.detail).toMatch(/viable: 0001:00:00\.0/);
    expect(by('RLIMIT_MEMLOCK')?.status).toBe('ok');

    const binder = new VfioPciBinder(host);
    const b = await binder.bind('0001:00:00.0');
    expect(b).toEqual({ device: '0001:00:00.0', previousDriver: null, group: 1 });
    const during = await runDoctor(host, profile, { skipQemu: true, pid: agentPid });
    expect(during.findings.find((f) => f.check === 'device 0001:00:00.0')?.detail).toBe('bound to vfio-pci');
    expect((await host.listDir('/dev/vfio'))?.map((e) => e.name)).toContain('1');
    expect(await binder.restore(b)).toBeNull();
    expect(await binder.driverOf('0001:00:00.0')).toBeNull();
    await expect(binder.bind('0009:00:00.0')).rejects.toThrow(/no such device on guest/);
  });

  it('the stale-lab sweep gives a device back to its driver after its controller died', async () => {
    const binder = new VfioPciBinder(host);
    await binder.bind('0001:00:00.0');
    // What a SIGKILLed controller leaves: a runtime dir whose lab.json names a dead controller and a bound device.
    const root = scratchDir('sweep');
    const dir = `${root}/lab-dead01`;
    mkdirSync(dir);
    writeFileSync(
      `${dir}/lab.json`,
      JSON.stringify({
        controllerPid: 2 ** 22 + 7,
        qemuPid: 2 ** 22 + 9,
        bindings: [{ device: '0001:00:00.0', previousDriver: null, group: 1 }],
      }),
    );
    writeFileSync(`${dir}/qmp.sock`, '');
    const swept = await sweepStaleLabs(root, host);
    expect(swept).toMatchObject([{ restored: ['0001:00:00.0'], qemuKilled: false }]);
    expect(await binder.driverOf('0001:00:00.0')).toBeNull();
    expect(existsSync(dir)).toBe(false);
    expect(readdirSync(`${root}/stale-lab-dead01`)).toEqual(['lab.json']);
  });
});

// The fault that flips the group's viability (and with it the nested lab host's "doctor on the guest: IOMMU group N"):
// a second device on the same PHB — the same IOMMU group on pseries — bound to a driver of the guest's own.
describe('doctor on a guest whose IOMMU group is not viable', () => {
  it('a second device on the PHB, bound to a guest driver, fails the group check and is named', async () => {
    const root = testRuntimeRoot();
    const { profile, image } = await emulatedLabInputs();
    const withBusyMember = { ...profile, devices: [...profile.devices, { id: 'busy1', driver: 'virtio-rng-pci', phb: 'phb1', props: {} }] };
    const lab = await Lab.launch(withBusyMember, { image, runtimeRoot: root });
    try {
      await lab.waitForGuestInit();
      const host = new AgentHost(await lab.agent());
      const labHost = await loadProfile('lab-host-vfio', { TCELAB_VFIO_HOST: '0001:00:00.0' });
      const report = await runDoctor(host, labHost, { skipQemu: true, pid: (await host.agent.info()).agentPid });
      const group = report.findings.find((f) => f.check === 'IOMMU group 1');
      expect(group?.status).toBe('fail');
      expect(group?.detail).toMatch(/^not viable: 0001:00:01\.0 \(virtio-pci\) is bound to a host driver$/);
    } finally {
      await lab.close();
    }
    expect(liveLabQemuPids(root)).toEqual([]);
  });
});
