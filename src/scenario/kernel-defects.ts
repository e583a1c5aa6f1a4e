import { patchesForDefect } from '../kernel/defect-patches.js';
import type { KernelFacts } from '../kernel/kernel-facts.js';
import { parseKernelSpec } from '../kernel/kernel-spec.js';

/**
 * Kernel defects the hostile-input scenarios meet (4, 5 and 6 of docs/verdicts.md), one entry each: what is wrong, its
 * fix if there is one and the first releases that have it, where its code runs. A check that names a defect and
 * measures the defect's answer is reported as that defect on a kernel without the fix; on a kernel with the fix the
 * same answer fails like any other (a regression). Steps name them: hcall's "knownDefect", map/unmap's "knownDefects"
 * (answer-defects.ts: which answers show each).
 */
export interface KernelDefect {
  /** Its number in docs/verdicts.md's list of known defects. */
  number: number;
  summary: string;
  /** The upstream fix, when there is one. */
  fix?: string;
  /**
   * Where it is fixed: the first release of each stable branch that has the fix (uname's X.Y.Z), as read in Debian's
   * sources. A kernel of a listed branch has it from that release on, a kernel of a later branch than every listed one
   * has it; none listed: unfixed.
   */
  fixedIn?: readonly string[];
  /** What issuing the defect's calls does to a host that has it (why some are not issued there). */
  unsafe?: string;
  /** Where the defective code runs for the calls that meet it. */
  runsIn: 'the kernel that handles the TCE hypercalls (a KVM host), or VFIO in the guest' | 'the guest kernel (VFIO)';
}

export const KERNEL_DEFECTS = {
  'ioba-npages-ignored': {
    number: 4,
    summary:
      'iommu_tce_check_ioba() ignores npages (it checks that the first entry is in the window, not the last): KVM accepts ' +
      'H_STUFF_TCE / H_PUT_TCE_INDIRECT that start inside a window and run past its end, and kvmppc_tce_put() then indexes ' +
      'stt->pages[] past its end; VFIO_IOMMU_UNMAP_DMA past the end of a window succeeds',
    fix: 'upstream 0b271f7d7f5e "powerpc/iommu: Fix the overflow validation in iommu_tce_check_ioba"',
    // Read in Debian's sources: 6.12.107 without it; 6.12.117, 6.12.118, 7.2.11, 7.2.13 and 7.3.4 with it.
    fixedIn: ['6.12.117', '7.2.11'],
    unsafe:
      'measured 2026-12-07 on Debian 6.12.107 as the KVM lab host: H_PUT_TCE_INDIRECT at the last entry of a window with a VFIO group ' +
      'attached, npages 2, Oopsed the host ("Unable to handle kernel data access on write" in kvmppc_tce_iommu_map, from ' +
      'kvmppc_h_put_tce_indirect) and hung the guest; with npages 2^32 KVM would act on 2^32 entries past the window (read in the source)',
    runsIn: 'the kernel that handles the TCE hypercalls (a KVM host), or VFIO in the guest',
  },
  'param-check-returns-one': {
    number: 5,
    summary:
      "VFIO sPAPR's MAP_DMA and UNMAP_DMA return the value of iommu_tce_put_param_check() / iommu_tce_clear_param_check() " +
      'as it is (`ret = …_param_check(…); if (ret) return ret;`), and those macros are the `||` of their checks: the ioctl ' +
      'fails with +1 and errno 0 instead of -1 and EINVAL',
    runsIn: 'the guest kernel (VFIO)',
  },
  'map-past-window-end': {
    number: 6,
    summary:
      "VFIO_IOMMU_MAP_DMA across a window's end: iommu_tce_put_param_check() checks the first entry only (npages 1), " +
      'tce_iommu_build_v2() takes a mapping reference on the region (mm_iommu_mapped_inc) before the hypervisor refuses ' +
      "the first entry past the end (H_PARAMETER), and the undo, tce_iommu_unuse_page_v2(), reads that entry's slot of the " +
      "window's userspace view, one past its end (it_userspace[it_size]): it finds no region there and drops nothing. The " +
      'ioctl fails with EINTR (H_PARAMETER, -4, returned as an errno) and the region keeps a reference no mapping holds: it ' +
      'is never released (UNREGISTER_MEMORY returns 0 and orphans it, as in defect 1; at container release ' +
      'tce_iommu_release() warns), its pages stay pinned. Where the view ends on a page boundary (a window of 512·k ' +
      'entries: 2 MiB of 4 KiB pages, the 1 GiB 32-bit window) the read hits the vmalloc guard page: a kernel Oops in ' +
      'tce_iommu_unuse_page_v2, the caller killed',
    runsIn: 'the guest kernel (VFIO)',
  },
} as const satisfies Record<string, KernelDefect>;

export type KernelDefectId = keyof typeof KERNEL_DEFECTS;
export const KERNEL_DEFECT_IDS = Object.keys(KERNEL_DEFECTS) as KernelDefectId[];

const versionOf = (release: string): number[] | undefined => {
  const m = /^(\d+)\.(\d+)(?:\.(\d+))?/.exec(release);
  return m ? [Number(m[1]), Number(m[2]), Number(m[3] ?? 0)] : undefined;
};

const compare = (a: number[], b: number[]): number => a[0]! - b[0]! || a[1]! - b[1]! || a[2]! - b[2]!;

/** Whether a kernel (uname -r: "6.12.107+deb13-powerpc64le", "7.2.11+bpo-powerpc64le") has a fix first released in fixedIn. */
export function hasFix(release: string, fixedIn: readonly string[]): boolean {
  const v = versionOf(release);
  const fixes = fixedIn.map(versionOf).filter((x): x is number[] => x !== undefined);
  if (!v || fixes.length === 0) return false;
  const branch = fixes.find((f) => f[0] === v[0] && f[1] === v[1]);
  if (branch) return compare(v, branch) >= 0;
  return fixes.every((f) => compare([v[0]!, v[1]!, 0], [f[0]!, f[1]!, 0]) > 0);
}

/** A kernel as far as its fixes go: its release, and what it was built from (a source with the repository's patches has their fixes). */
export type KernelWithFixes = { release: string; source?: Pick<KernelFacts['source'], 'spec'> };

/**
 * Whether this kernel has the defect's fix: a release that has it upstream or in its stable branch, or a kernel tcelab
 * built from a source with the repository's series for its version (debian-source:<v>+patches) when that series
 * fixes the defect (kernel-patches/README.md says which patch fixes which).
 */
export function kernelHasFix(defect: KernelDefect, kernel: KernelWithFixes): boolean {
  if (defect.fixedIn !== undefined && hasFix(kernel.release, defect.fixedIn)) return true;
  const patched = patchedVersionOf(kernel);
  return patched !== undefined && patchesForDefect(defect.number).some((p) => p.base === patched);
}

/** The upstream version whose repository series a kernel was built with (debian-source:…+patches), if it was. */
function patchedVersionOf(kernel: KernelWithFixes): string | undefined {
  const spec = kernel.source?.spec ? parseKernelSpec(kernel.source.spec, 'the kernel’s source') : undefined;
  return spec?.kind === 'debian-source' && spec.repoPatches ? versionOf(kernel.release)?.join('.') : undefined;
}

/** The defect's one-line description: its number, what is wrong, its fix. */
export function describeDefect(id: KernelDefectId): string {
  const d: KernelDefect = KERNEL_DEFECTS[id];
  return `defect ${d.number}: ${d.summary}${d.fix ? `; fixed by ${d.fix} (${d.fixedIn?.join(', ')} and later)` : '; not fixed upstream'}`;
}

/**
 * The known-defect text for a check that measured the defect's answer on this kernel, or undefined when this kernel has
 * the fix (the answer is then a regression: the check fails).
 */
export function knownDefectText(id: KernelDefectId, kernel: KernelWithFixes): string | undefined {
  if (kernelHasFix(KERNEL_DEFECTS[id], kernel)) return undefined;
  return `${describeDefect(id)}; in ${KERNEL_DEFECTS[id].runsIn}`;
}
