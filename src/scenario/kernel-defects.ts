import type { KernelFacts } from '../kernel/kernel-facts.js';

/**
 * Kernel defects the hostile-input scenarios meet, one entry each: what is wrong, the fix if there is one, and which
 * kernels' sources were read with and without it. A check that names a defect (a step's "knownDefect") and measures the
 * defect's answer is reported as that defect — unless this kernel's source was read WITH the fix: then the answer is a
 * regression and the check fails. Stated only as far as it was read: other versions say "not read".
 */
export interface KernelDefect {
  /** Its number in docs/verdicts.md's list of known defects. */
  number: number;
  summary: string;
  /** The upstream fix, when there is one. */
  fix?: string;
  /** Debian versions whose source was read, without the fix and with it (or still affected where there is no fix). */
  readWithout: string[];
  readWith: string[];
  /** What issuing the defect's calls does to a host that has it (why some are not issued there). */
  unsafe?: string;
  /** Where the defective code runs for the calls that meet it. */
  runsIn: 'the kernel that handles the TCE hypercalls (a KVM host)' | 'the guest kernel (VFIO)';
}

export const KERNEL_DEFECTS = {
  'tce-bound': {
    number: 4,
    summary:
      'iommu_tce_check_ioba() ignores npages: KVM accepts H_STUFF_TCE / H_PUT_TCE_INDIRECT (and VFIO an UNMAP_DMA) that ' +
      'starts inside a window and runs past its end, and kvmppc_tce_put() then indexes stt->pages[] past its end (silent without KASAN)',
    fix: 'upstream 0b271f7d7f5e "powerpc/iommu: Fix the overflow validation in iommu_tce_check_ioba"',
    readWithout: ['6.12.107-1'],
    readWith: ['6.12.118-1', '7.2.11-1~bpo13+1', '7.2.13-1', '7.3.4-1~bpo13+1'],
    runsIn: 'the kernel that handles the TCE hypercalls (a KVM host)',
    unsafe:
      'measured 2026-12-07 on Debian 6.12.107 as the KVM lab host: H_PUT_TCE_INDIRECT at the last entry of a window with a VFIO group ' +
      'attached, npages 2, Oopsed the host ("Unable to handle kernel data access on write" in kvmppc_tce_iommu_map, from ' +
      'kvmppc_h_put_tce_indirect) and hung the guest; with npages 2^32 KVM would act on 2^32 entries past the window (read in the source)',
  },
  'param-check-returns-1': {
    number: 5,
    summary:
      'VFIO_IOMMU_UNMAP_DMA / MAP_DMA return +1 with errno 0 instead of -1/EINVAL when iommu_tce_clear_param_check() or ' +
      'iommu_tce_put_param_check() refuses (the macros are the || of their checks, and tce_iommu_ioctl() returns that)',
    // No fix yet: "without" lists where it was measured or read (issue 29: 7.2.11 measured, 7.3.4 read unchanged).
    readWithout: ['7.2.11-1~bpo13+1', '7.3.4-1~bpo13+1'],
    readWith: [],
    runsIn: 'the guest kernel (VFIO)',
  },
} as const satisfies Record<string, KernelDefect>;

export type KernelDefectId = keyof typeof KERNEL_DEFECTS;
export const KERNEL_DEFECT_IDS = Object.keys(KERNEL_DEFECTS) as KernelDefectId[];

/** What this kernel's source is known to have: 'without' the fix, 'with' it, or 'not read'. */
export function fixStatus(defect: KernelDefect, kernel: KernelFacts): 'without' | 'with' | 'not read' {
  const v = kernel.source.version;
  if (!v) return 'not read';
  if (defect.readWith.includes(v)) return 'with';
  if (defect.readWithout.includes(v)) return 'without';
  return 'not read';
}

/**
 * The known-defect text for a check that measured the defect's answer on this kernel, or undefined when this kernel's
 * source has the fix (the answer is then a regression: the check fails).
 */
export function knownDefectText(id: KernelDefectId, kernel: KernelFacts): string | undefined {
  const d: KernelDefect = KERNEL_DEFECTS[id];
  const status = fixStatus(d, kernel);
  if (status === 'with') return undefined;
  const version = kernel.source.version ?? kernel.release;
  const read =
    status === 'without'
      ? `Debian ${version}'s source lacks the fix`
      : `Debian ${version}'s source was not read for it (read without the fix: ${d.readWithout.join(', ') || 'none'})`;
  return `defect ${d.number}: ${d.summary}${d.fix ? `; fixed by ${d.fix}` : ''}; ${read}; in ${d.runsIn}`;
}
