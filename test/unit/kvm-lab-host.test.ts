import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadProfile, validateProfile } from '../../src/qemu/profile.js';
import { buildArgv, runtimePaths } from '../../src/qemu/argv.js';
import { modulesAfterSave, modulesAtBoot } from '../../src/qemu/modules-after-save.js';
import { coldOnlyReason } from '../../src/snapshot/snapshot.js';
import { knownCauseHint } from '../../src/qemu/stderr-diagnosis.js';
import { fieldOf } from '../helpers/input-error.js';
import { CheckRecorder } from '../../src/scenario/checks.js';
import { liobnOf } from '../../src/ddw/dma-window.js';
import { QemuTraceLogs } from '../../src/qemu/trace.js';
import { judgeTcePath } from '../../src/scenario/run/tce-path-verdict.js';
import { profilesDir } from '../../src/util/paths.js';
import { silentProgress } from '../../src/util/progress.js';

const kvmLabHost = () => JSON.parse(readFileSync(join(profilesDir, 'kvm-lab-host.json'), 'utf8'));

describe('the KVM lab host profile', () => {
  it('boots its inner machine under KVM on huge pages, with kvm_hv loaded in the guest after any save (never by /init)', async () => {
    const p = await loadProfile('kvm-lab-host');
    expect(p.guest).toMatchObject({ image: 'kvm-host', modules: ['kvm_hv'] });
    expect(p.qemu.machine['cap-nested-hv']).toBe('on');
    expect(p.inner?.qemu).toMatchObject({ accel: 'kvm', cpu: 'host', hugepages: true });
    expect(p.inner?.guest).toMatchObject({ boot: true, image: 'base' });
    const outer = buildArgv(p, runtimePaths('/r'), { kernel: 'k', initrd: 'i' }, 'lab');
    // A snapshot must not hold kvm_hv loaded (QEMU does not migrate the partition table it registers): the lab loads it.
    expect(outer[outer.indexOf('-append') + 1]).not.toMatch(/tcelab\.modules/);
    expect(modulesAfterSave(p)).toEqual(['kvm_hv']);
    expect(modulesAtBoot({ guest: { ...p.guest, modules: ['kvm_hv', 'dummy'] } })).toEqual(['dummy']);
    expect(coldOnlyReason(p)).toBeUndefined();
    const inner = buildArgv(p.inner!, runtimePaths('/r'), { kernel: 'k', initrd: 'i' }, 'lab');
    expect(inner.join(' ')).toMatch(/-mem-path \/dev\/hugepages/);
    // The inner guest never hot-plugs: /init leaves the RPA hotplug driver out (512 slots, 0.45 s of its boot); the host
    // guest, which `tcelab hotplug` drives, keeps it.
    expect(p.inner?.guest.hotplug).toBe(false);
    expect(inner[inner.indexOf('-append') + 1]).toMatch(/ tcelab\.hotplug=off$/);
    expect(outer[outer.indexOf('-append') + 1]).not.toMatch(/tcelab\.hotplug/);
    // What the KVM verdicts read: QEMU's TCE tables, group attachments and its own TCE updates.
    for (const e of [
      'spapr_iommu_new_table',
      'vfio_spapr_group_attach',
      'spapr_iommu_pci_put',
      'spapr_iommu_pci_indirect',
      'spapr_iommu_pci_stuff',
    ])
      expect(inner).toContain(e);
  });

  it('explains its inner QEMU\'s "hardware reason 3": the host guest\'s hypervisor holds no partition table for it', () => {
    expect(knownCauseHint('KVM: unknown exit, hardware reason 3\nNIP 0000000000000100')).toMatch(/H_NOT_AVAILABLE.*nested\.ptcr/s);
    expect(knownCauseHint('KVM: unknown exit, hardware reason 31')).toBeUndefined();
  });

  it('refuses what cannot work, naming the field', () => {
    const p = kvmLabHost();
    expect(fieldOf(() => validateProfile({ ...p, guest: { ...p.guest, image: 'with-qemu' } }, 't'))).toBe('guest.modules[0]');
    expect(fieldOf(() => validateProfile({ ...p, guest: { ...p.guest, image: 'with-qemu', modules: [] } }, 't'))).toBe('guest.image');
    expect(fieldOf(() => validateProfile({ ...p, guest: { ...p.guest, modules: [] } }, 't'))).toBe('guest.modules');
    expect(fieldOf(() => validateProfile({ ...p, guest: { ...p.guest, modules: ['KVM-HV'] } }, 't'))).toBe('guest.modules[0]');
    expect(fieldOf(() => validateProfile({ ...p, inner: { ...p.inner, guest: { ...p.inner.guest, hotplug: 'no' } } }, 't'))).toBe(
      'inner.guest.hotplug',
    );
    expect(fieldOf(() => validateProfile({ ...p, inner: { ...p.inner, guest: { ...p.inner.guest, image: 'with-qemu' } } }, 't'))).toBe(
      'inner.guest.image',
    );
    expect(fieldOf(() => validateProfile({ ...p, inner: { ...p.inner, qemu: { ...p.inner.qemu, hugepages: 'yes' } } }, 't'))).toBe(
      'inner.qemu.hugepages',
    );
  });
});

describe("QEMU's TCE trace, judged", () => {
  const profile = () => validateProfile(kvmLabHost(), 'kvm-lab-host').inner!;
  const judge = (lines: string[]) => {
    const logs = new QemuTraceLogs();
    // Split mid-line, as a pipe delivers it.
    const text = `${lines.join('\n')}\n`;
    logs.feed(text.slice(0, 17));
    logs.feed(text.slice(17));
    const checks = new CheckRecorder(silentProgress);
    judgeTcePath(logs.tcePath, profile(), checks, text);
    return Object.fromEntries(checks.checks.map((c) => [c.name, c.status]));
  };

  it('names the liobns of a PHB (32-bit window and DDW)', () => {
    expect([0, 1].map((n) => liobnOf(1, n))).toEqual([0x80000100, 0x80000101]);
  });

  it('passes the in-kernel path, and fails each way off it', () => {
    const inKernel = [
      'spapr_iommu_new_table liobn=0x80000100 table=0x3fff fd=25',
      'vfio_spapr_group_attach Attached groupfd 19 to liobn fd 25',
      'spapr_iommu_new_table liobn=0x80000101 table=0x3ffe fd=92',
      'vfio_spapr_group_attach Attached groupfd 19 to liobn fd 92',
      // Another PHB's updates (the emulated default PHB) are not the device's.
      'spapr_iommu_pci_put liobn=0x80000000 ioba=0x0 tce=0x1 ret=0',
    ];
    expect(Object.values(judge(inKernel))).toEqual(['pass', 'pass', 'pass']);
    expect(Object.values(judge(inKernel.slice(0, 3)))).toEqual(['pass', 'fail', 'pass']);
    expect(Object.values(judge([...inKernel, 'spapr_iommu_pci_stuff liobn=0x80000101 ioba=0x0 tcevalue=0x0 npages=512 ret=0']))).toEqual([
      'pass',
      'pass',
      'fail',
    ]);
    expect(Object.values(judge(['spapr_iommu_new_table liobn=0x80000100 table=0x3fff fd=-1']))).toEqual(['fail', 'fail', 'pass']);
    expect(Object.values(judge([]))).toEqual(['fail', 'fail', 'pass']);
  });
});
