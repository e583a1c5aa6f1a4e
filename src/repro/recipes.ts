import { KERNEL_REPORT_NAMES } from '../scenario/kernel-log.js';
import { UNREGISTER_WHILE_MAPPED_DEFECT } from '../scenario/procedures/prereg-accounting.js';
import { KVM_VFIO_RELEASE_WARNING, KVM_VFIO_UNATTACHED_DEFECT } from '../scenario/procedures/kvm-vfio-early-exit.js';
import { describeDefect } from '../scenario/kernel-defects.js';
import { workerStep, type ReproStep } from './steps-file.js';

/** The kernel-log verdict, under the lab's own name. */
export const KERNEL_LOG_CHECK = `guest kernel logged no ${KERNEL_REPORT_NAMES.join(', ')}`;

/**
 * How to reproduce one kind of failure without tcelab: the guest-side steps,
 * cut down to what the checks need, and what a maintainer reads in the report.
 */
export interface ReproRecipe {
  /** The bundle's name and the report's subject. */
  id: string;
  subject: string;
  scenario: string;
  /** The scenario's checks this recipe reproduces (a results dir's failed or known-defect check picks it). */
  checks: string[];
  /** The steps, from the run's options (sizes as the run had them). */
  steps(options: Record<string, unknown>): ReproStep[];
  /** What the steps do, in words, in order. */
  what(options: Record<string, unknown>): string[];
  /** Kernel config values that matter (the run's values are reported). */
  config: string[];
  /** Source lines involved, as tcelab knows them: path, function, and what it does wrong. */
  sources: Array<{ path: string; fn: string; why: string }>;
  /** How the kernel's log shows it, when it does. */
  logPattern?: RegExp;
  /** The defect's number in docs/verdicts.md's known defects (its fix is in kernel-patches/), when it is a known one. */
  defect?: number;
}

/** Pinned pages now, minus the baseline saved as $acquired0/$released0 (nr_foll_pin_acquired − released). */
const PINNED_SINCE_BASELINE = 'nrFollPinAcquired - nrFollPinReleased - ($acquired0 - $released0)';

const unregisterWhileMapped: ReproRecipe = {
  id: 'unregister-while-mapped',
  defect: 1,
  subject: 'vfio/spapr_tce: UNREGISTER_MEMORY of a mapped region returns 0, leaks its pins',
  scenario: 'prereg-accounting',
  checks: [
    'unregistering a region while it is mapped',
    'the orphaned region is unknown to the container',
    'the orphaned region keeps its pins while the process lives',
    'pinned pages back to baseline after the worker exits',
    'guest: pinned pages back to the agent-up baseline before shutdown',
    KERNEL_LOG_CHECK,
  ],
  steps(options) {
    const mib = Number(options.sizeMiB ?? 32);
    const bytes = mib * 1024 * 1024;
    return [
      { note: `VFIO sPAPR TCE v2: unregister a ${mib} MiB pre-registered region while 1 MiB of it is mapped` },
      { execute: 'info', save: { pageSize: 'pageSize' } },
      { execute: 'bind', arguments: { device: '$device' }, save: { group: 'group' } },
      { execute: 'worker-start', save: { worker: 'worker' } },
      workerStep('open', { group: '$group' }),
      { execute: 'counters', save: { acquired0: 'nrFollPinAcquired', released0: 'nrFollPinReleased' } },
      workerStep('alloc', { size: bytes }, { save: { region: 'region' } }),
      workerStep('register', { region: '$region' }),
      {
        execute: 'counters',
        check: `registering ${mib} MiB pins ${mib} MiB of pages`,
        expect: { value: PINNED_SINCE_BASELINE, equals: `${bytes} / $pageSize` },
      },
      workerStep(
        'map',
        { region: '$region', iova: '0x0', size: 1024 * 1024 },
        { check: 'mapping 1 MiB of the region at IOVA 0 of the 32-bit window' },
      ),
      workerStep(
        'unregister',
        { region: '$region' },
        { check: 'unregistering a region while it is mapped', expect: { error: 'EBUSY' }, knownDefect: UNREGISTER_WHILE_MAPPED_DEFECT },
      ),
      workerStep('unmap', { iova: '0x0', size: 1024 * 1024 }, { check: 'unmapping it' }),
      // On a correct kernel the region is still registered here; with the defect the container forgot it (ENOENT).
      workerStep(
        'unregister',
        { region: '$region' },
        { check: 'unregistering the region once unmapped', knownDefect: 'the first unregister orphaned it' },
      ),
      {
        execute: 'counters',
        arguments: { rcuBarrier: true },
        check: 'pinned pages back to baseline after unregister',
        waitMs: 10_000,
        atRest: true,
        expect: { value: PINNED_SINCE_BASELINE, equals: 0 },
        knownDefect: 'the orphaned registration keeps its pins while the process lives',
      },
      { execute: 'worker-stop', arguments: { worker: '$worker', signal: 'TERM' } },
      { execute: 'khugepaged-pass' },
      {
        execute: 'counters',
        arguments: { rcuBarrier: true },
        check: 'pinned pages back to baseline after the worker exits',
        waitMs: 10_000,
        atRest: true,
        expect: { value: PINNED_SINCE_BASELINE, equals: 0 },
        knownDefect: 'nothing puts an orphaned registration: destroy_context() only warns that the mm still lists it',
      },
      { execute: 'unbind', arguments: { device: '$device' } },
      // 6.12 warns only when khugepaged drops the dead worker's mm (7.x at the exit itself): khugepaged-pass above
      // woke it until it had scanned every mm once, so that drop is done; without THP it waited 10 s instead.
      { execute: 'kernel-log', check: KERNEL_LOG_CHECK, expect: { value: 'reports', equals: 0 } },
    ];
  },
  what(options) {
    const mib = Number(options.sizeMiB ?? 32);
    return [
      'bind the device to vfio-pci; open its IOMMU group in a VFIO_SPAPR_TCE_v2_IOMMU container (a forked process, the "worker")',
      `VFIO_IOMMU_SPAPR_REGISTER_MEMORY of a ${mib} MiB anonymous region; VFIO_IOMMU_MAP_DMA of its first 1 MiB at IOVA 0 of the default 32-bit window`,
      'VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY of the region while it is mapped (expected: EBUSY)',
      'VFIO_IOMMU_UNMAP_DMA of the 1 MiB; VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY again (expected: success)',
      'pinned pages (nr_foll_pin_acquired − nr_foll_pin_released) back to where they were, within 10 s or once RCU barriers show them at rest; ' +
        'then SIGTERM the worker, wake khugepaged until it has scanned every mm once (it drops the dead mm), and look again',
      'the kernel log since the start: no WARNING, BUG, Oops, panic, lockup, RCU stall or hung task',
    ];
  },
  config: ['VFIO_IOMMU_SPAPR_TCE', 'SPAPR_TCE_IOMMU', 'VFIO_CONTAINER', 'IOMMUFD', 'PPC_64K_PAGES'],
  sources: [
    {
      path: 'drivers/vfio/vfio_iommu_spapr_tce.c',
      fn: 'tce_iommu_unregister_pages()',
      why:
        "takes its own mm_iommu_get() reference, so tce_iommu_prereg_free()'s mm_iommu_put() succeeds and the container " +
        "forgets the region; the final mm_iommu_put()'s -EBUSY (still mapped) is discarded and 0 returned",
    },
    {
      path: 'arch/powerpc/mm/book3s64/iommu_api.c',
      fn: 'mm_iommu_put()',
      why: 'returns -EBUSY while the region has mappings (mem->mapped); the region stays on mm->context.iommu_group_mem_list with its pages pinned',
    },
    {
      path: 'arch/powerpc/mm/book3s64/mmu_context.c',
      fn: 'destroy_context()',
      why: 'only WARN_ON_ONCE(!list_empty(&mm->context.iommu_group_mem_list)): nothing puts the orphaned pages when the mm goes',
    },
  ],
  logPattern: /destroy_context/,
};

/**
 * A VMM that realizes its vfio-pci device (its group goes to the kvm-vfio device) and fails before machine reset,
 * where the TCE table would be attached: here a device model that does not exist, after the vfio-pci one (QEMU
 * creates -device entries in order), which fails on any host; the lab's scenario uses KVM's page-size refusal.
 */
const EARLY_EXIT_VMM =
  'exec qemu-system-ppc64 -M pseries,accel=kvm,x-vof=on -cpu host -m 256M -nodefaults -display none -serial none ' +
  '-device spapr-pci-host-bridge,index=1,id=phb1,ddw=on,dma_win_size=0x4000000 -device "vfio-pci,host=$1,bus=phb1.0" ' +
  '-device tcelab-no-such-device';

const kvmVfioUnattached: ReproRecipe = {
  id: 'kvm-vfio-unattached-group',
  defect: 3,
  subject: 'KVM: PPC: kvm_vfio_release WARNs for a VFIO group never attached to a TCE table',
  scenario: 'kvm-vfio-early-exit',
  checks: ['host kernel: releasing a kvm-vfio device whose group was never attached to a TCE table does not warn', KERNEL_LOG_CHECK],
  steps() {
    return [
      { note: 'a KVM host: a VMM adds a VFIO group to the kvm-vfio device and exits before KVM_DEV_VFIO_GROUP_SET_SPAPR_TCE' },
      {
        execute: 'exec',
        arguments: { argv: ['modprobe', 'kvm_hv'], timeoutMs: 60_000 },
        check: 'kvm_hv is loaded',
        expect: { value: 'exitCode', equals: 0 },
      },
      { execute: 'bind', arguments: { device: '$device' }, save: { group: 'group' } },
      {
        execute: 'exec',
        arguments: { argv: ['sh', '-c', EARLY_EXIT_VMM, 'vmm', '$device'], timeoutMs: 120_000 },
        check: 'the VMM realizes its vfio-pci device and exits before the machine resets',
        expect: { value: 'exitCode', equals: 1 },
      },
      { note: "the kvm-vfio device is released with the VMM's last fd", sleepMs: 2000 },
      {
        execute: 'kernel-log',
        check: KERNEL_LOG_CHECK,
        expect: { value: 'reports', equals: 0 },
        knownDefect: KVM_VFIO_UNATTACHED_DEFECT,
      },
      { execute: 'unbind', arguments: { device: '$device' } },
    ];
  },
  what() {
    return [
      'on a POWER KVM host (kvm_hv loaded), bind the device to vfio-pci',
      'start qemu-system-ppc64 -accel kvm with the device passed through (vfio-pci on a DDW PHB) and, after it, a -device ' +
        'that does not exist: QEMU realizes vfio-pci (its group is added to the kvm-vfio device, KVM_DEV_VFIO_FILE_ADD) and ' +
        'exits on the next device, before machine reset attaches the group to a TCE table (KVM_DEV_VFIO_GROUP_SET_SPAPR_TCE)',
      'the kernel log since the start: no WARNING (kvm_vfio_release, when the VMM exits and its kvm-vfio device is released)',
    ];
  },
  config: ['KVM_BOOK3S_64_HV', 'SPAPR_TCE_IOMMU', 'VFIO_CONTAINER', 'IOMMUFD'],
  sources: [
    {
      path: 'virt/kvm/vfio.c',
      fn: 'kvm_spapr_tce_release_vfio_group()',
      why:
        'warns (WARN_ON_ONCE) when the file has no iommu_group; that is set only by KVM_DEV_VFIO_GROUP_SET_SPAPR_TCE, so a ' +
        'group that was added and never attached to a TCE table warns',
    },
    {
      path: 'virt/kvm/vfio.c',
      fn: 'kvm_vfio_release()',
      why: 'calls the sPAPR release for every file the device tracks, attached or not (the WARNING names it: vfio.c:103 on 6.12.107)',
    },
  ],
  logPattern: KVM_VFIO_RELEASE_WARNING,
};

/** MAP and UNMAP at an IOVA 2 KiB off a page: the ioctl fails with +1 and errno 0 (defect 5) where -1/EINVAL is due. */
const paramCheckReturnsOne: ReproRecipe = {
  id: 'param-check-returns-one',
  defect: 5,
  subject: 'vfio/spapr_tce: MAP_DMA and UNMAP_DMA fail with 1 and errno 0 instead of -EINVAL',
  scenario: 'hostile-process',
  checks: ['step 99: map p into dma32', 'step 100: unmap 1 MiB at 0x800800 of dma32'],
  steps() {
    const MiB = 1024 * 1024;
    return [
      { note: 'VFIO sPAPR TCE v2: MAP_DMA and UNMAP_DMA at an IOVA 2 KiB off a page of the default 32-bit window' },
      { execute: 'bind', arguments: { device: '$device' }, save: { group: 'group' } },
      { execute: 'worker-start', save: { worker: 'worker' } },
      workerStep('open', { group: '$group' }),
      workerStep('alloc', { size: MiB }, { save: { region: 'region' } }),
      workerStep('register', { region: '$region' }),
      workerStep(
        'map',
        { region: '$region', iova: '0x800800', size: MiB },
        { check: 'step 99: map p into dma32', expect: { error: 'EINVAL' }, knownDefect: describeDefect('param-check-returns-one') },
      ),
      workerStep(
        'unmap',
        { iova: '0x800800', size: MiB },
        {
          check: 'step 100: unmap 1 MiB at 0x800800 of dma32',
          expect: { error: 'EINVAL' },
          knownDefect: describeDefect('param-check-returns-one'),
        },
      ),
      workerStep('unregister', { region: '$region' }),
      { execute: 'worker-stop', arguments: { worker: '$worker', signal: 'TERM' } },
      { execute: 'unbind', arguments: { device: '$device' } },
    ];
  },
  what() {
    return [
      'bind the device to vfio-pci; open its IOMMU group in a VFIO_SPAPR_TCE_v2_IOMMU container (a forked process, the "worker")',
      'VFIO_IOMMU_SPAPR_REGISTER_MEMORY of a 1 MiB anonymous region',
      'VFIO_IOMMU_MAP_DMA of it at IOVA 0x800800 (2 KiB off a 4 KiB page) of the default window (expected: -1, EINVAL)',
      'VFIO_IOMMU_UNMAP_DMA of 1 MiB at IOVA 0x800800 (expected: -1, EINVAL); the agent reports a positive return as ERETURN+<n>',
    ];
  },
  config: ['VFIO_IOMMU_SPAPR_TCE', 'SPAPR_TCE_IOMMU', 'VFIO_CONTAINER', 'PPC_64K_PAGES'],
  sources: [
    {
      path: 'drivers/vfio/vfio_iommu_spapr_tce.c',
      fn: 'tce_iommu_ioctl()',
      why: 'VFIO_IOMMU_MAP_DMA / UNMAP_DMA: `ret = iommu_tce_put_param_check(…)` / `iommu_tce_clear_param_check(…)`; `if (ret) return ret;`',
    },
    {
      path: 'arch/powerpc/include/asm/iommu.h',
      fn: 'iommu_tce_put_param_check / iommu_tce_clear_param_check',
      why: 'macros that are the || of their checks: 1 when a check fails, not -EINVAL, so the ioctl returns 1 with errno 0',
    },
  ],
};

/** Every recipe; a new reproducible failure is one entry. */
export const RECIPES: ReproRecipe[] = [unregisterWhileMapped, kvmVfioUnattached, paramCheckReturnsOne];

/** The recipe that reproduces a scenario's check, if tcelab has one. */
export function recipeFor(scenario: string, check: string): ReproRecipe | undefined {
  return RECIPES.find((r) => r.scenario === scenario && r.checks.includes(check));
}
