import type { Profile } from '../../qemu/profile.js';
import { describeError } from '../../util/errors.js';
import { PollTimeoutError, pollUntil } from '../../util/poll.js';
import { requireKvmLabHost } from './kvm-lab-host.js';
import { scanKernelLog } from '../kernel-log.js';
import { disposeInnerLab, launchInnerLab } from '../nested.js';
import type { ScenarioDefinition } from '../scenario.js';

/**
 * Defect 3, found on the emulated KVM lab host (6.12.107, 2026-12-06): a VMM that adds its VFIO group to the
 * kvm-vfio device and exits before attaching it to a TCE table (KVM_DEV_VFIO_GROUP_SET_SPAPR_TCE) makes the host
 * kernel warn when the kvm-vfio device is released: kvm_spapr_tce_release_vfio_group() has
 * WARN_ON_ONCE(!kvf->iommu_group). Any VMM can reach it; with panic_on_warn the host crashes.
 */
export const KVM_VFIO_UNATTACHED_DEFECT =
  'a VFIO group added to the kvm-vfio device and never attached to a TCE table warns when the device is released ' +
  '(kvm_spapr_tce_release_vfio_group: WARN_ON_ONCE(!kvf->iommu_group), virt/kvm/vfio.c kvm_vfio_release): a user-triggerable ' +
  'WARN in the KVM host kernel, a crash with panic_on_warn';

/**
 * The host kernel's report of defect 3: the WARN at virt/kvm/vfio.c in the kvm-vfio release path, named as its
 * caller was inlined — `kvm_vfio_release+0x1a8/0x1c0` (6.12.107), `kvm_vfio_file_free.isra.0+0x118/0x130` (7.2.11,
 * 7.3~rc7, which also print the line before the function: "WARNING: …/vfio.c:103 at kvm_vfio_file_free…"), or as
 * itself where it was not inlined — `kvm_spapr_tce_release_vfio_group+0x60/0x78` (6.12.107 built with tcelab's lab
 * configuration, measured 2026-12-07).
 */
export const KVM_VFIO_RELEASE_WARNING =
  /WARNING:.*virt\/kvm\/vfio\.c:\d+.*(?:kvm_vfio_(?:release|file_free)|kvm_spapr_tce_release_vfio_group)/;

/**
 * KVM's refusal of a machine whose largest page size it cannot back, after the VFIO device is realized: "Can't
 * support 64 kiB guest pages with 4 kiB host pages…" (4 KiB-page RAM), "KVM can't supply 64kiB CI pages, which guest
 * expects" (huge-page RAM); both measured with QEMU 10.0.13 on the kvm-lab-host profile.
 */
const PAGE_SIZE_REFUSAL = /64 ?kiB/;

/** How long the host kernel gets to release the exited VMM's kvm-vfio device and log it. */
const REPORT_WAIT_MS = 10_000;

/**
 * Provokes defect 3 on a KVM lab host: its inner QEMU is started with a machine option KVM refuses after the VFIO
 * device is realized (no cap-hpt-max-page-size=4k: PAGE_SIZE_REFUSAL), so it
 * exits between adding the group to the kvm-vfio device and the TCE attach. The host's kernel log is the verdict.
 * Runs on the host guest (its kernel is the one under test); the inner lab is its own.
 */
export const kvmVfioEarlyExit: ScenarioDefinition = {
  name: 'kvm-vfio-early-exit',
  description: 'a KVM VMM that exits after realizing its VFIO device and before the TCE attach: the host kernel must not warn',
  defaultProfile: 'kvm-lab-host',
  drivesInnerLabs: true,
  seedableFaults: {
    'attach-first': 'the inner QEMU keeps cap-hpt-max-page-size=4k, boots, attaches its group and is quit: the defect is not reached',
  },
  adjustProfile(profile) {
    requireKvmLabHost('kvm-vfio-early-exit', profile, { innerBoots: false });
    return profile;
  },
  async run(ctx) {
    const { checks, agent } = ctx;
    const inner = ctx.profile.inner!;
    ctx.expectKernelReport({ pattern: KVM_VFIO_RELEASE_WARNING, knownDefect: KVM_VFIO_UNATTACHED_DEFECT });
    const { 'cap-hpt-max-page-size': _kept, ...refused } = inner.qemu.machine;
    const attachFirst = ctx.seeded('attach-first');
    const launched: Profile = { ...inner, qemu: { ...inner.qemu, machine: attachFirst ? inner.qemu.machine : refused } };
    ctx.phase('inner QEMU launched');
    let exitedEarly: string | undefined;
    try {
      const lab = await launchInnerLab(ctx, launched);
      await lab.shutdown('quit', ctx.progress);
      await disposeInnerLab(ctx, lab, 'attached');
    } catch (err) {
      exitedEarly = describeError(err);
    }
    checks.record(
      'the inner QEMU exits after realizing its VFIO device, before the TCE attach',
      exitedEarly !== undefined && PAGE_SIZE_REFUSAL.test(exitedEarly),
      'an exit on the 64 KiB page-size refusal',
      exitedEarly ?? 'it started, attached its group and was quit',
    );
    ctx.phase('inner QEMU gone');
    // The kvm-vfio device is released with the VMM's last fd: wait for the host kernel's word on it. Once no VMM is
    // left and an RCU barrier has run (what its release deferred has run too), the log read next is the last word.
    const warnings = async () => {
      const dmesg = await agent.exec(['dmesg'], 10_000);
      return scanKernelLog(dmesg.stdout).filter((r) => KVM_VFIO_RELEASE_WARNING.test(`${r.line}\n${r.excerpt.join('\n')}`));
    };
    let atRest = false;
    const reports = await pollUntil(
      "the host kernel's warning on the kvm-vfio release",
      async () => {
        const found = await warnings();
        if (found.length) return found;
        const vmmLeft = (await agent.exec(['pidof', 'qemu-system-ppc64'], 10_000)).exitCode === 0;
        const barrier = vmmLeft ? undefined : (await agent.counters(undefined, { rcuBarrier: true })).rcuBarrier;
        if (!barrier || 'error' in barrier) return undefined;
        atRest = true;
        return warnings();
      },
      { timeoutMs: REPORT_WAIT_MS, intervalMs: 500 },
    ).catch((err: unknown) => {
      // None within the wait is the good outcome.
      if (err instanceof PollTimeoutError) return [];
      throw err;
    });
    checks.record(
      'host kernel: releasing a kvm-vfio device whose group was never attached to a TCE table does not warn',
      reports.length === 0,
      'no WARNING',
      reports.length
        ? `${reports[0]!.line} | ${reports[0]!.excerpt.slice(0, 4).join(' | ')}`
        : atRest
          ? 'none once no VMM was left and an RCU barrier had run'
          : `none within ${REPORT_WAIT_MS / 1000} s`,
      undefined,
      reports.length ? KVM_VFIO_UNATTACHED_DEFECT : undefined,
    );
  },
};
