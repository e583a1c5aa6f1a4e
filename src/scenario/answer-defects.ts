/**
 * Kernel defects a step recognises by the answer an ioctl gave: a step that expects an error names the defects its
 * operation is known to show instead (scenario files: "knownDefects"), and a measured answer that is one of theirs is
 * reported as that known defect (KNOWN-DEFECT, not FAIL) on the kernels that lack its fix. On a kernel with the fix,
 * the same answer fails like any other: a regression, said so in the check's detail.
 */
export interface AnswerDefect {
  /** The answers that show it, as the check measures them: "success" or "error <class>" ("error ERETURN+1"). */
  answers: readonly string[];
  defect: string;
  /**
   * What a map step that shows it leaves behind, declared for the run's verdicts once it has: the region's pages,
   * pinned for good (the guest balance reports them as this defect), and the kernel's reports of it (pattern).
   */
  leavesRegionPinned?: { kernelReport: RegExp };
  /**
   * Where it is fixed: the first release of each stable branch that has the fix (uname's X.Y.Z). A kernel of a listed
   * branch has it from that release on, a kernel of a later branch than every listed one has it; none listed: unfixed.
   */
  fixedIn?: readonly string[];
}

export const ANSWER_DEFECTS = {
  'ioba-npages-ignored': {
    answers: ['success'],
    defect:
      'defect 4: iommu_tce_check_ioba() ignores npages (it checks that the first entry is in the window, not the last), so ' +
      'VFIO_IOMMU_UNMAP_DMA past the end of a window succeeds (KVM validates H_PUT_TCE_INDIRECT and H_STUFF_TCE with the same ' +
      'check); fixed upstream by 0b271f7d7f5e "powerpc/iommu: Fix the overflow validation in iommu_tce_check_ioba" ' +
      '(Debian 6.12.118, 7.2.11 and later)',
    fixedIn: ['6.12.118', '7.2.11'],
  },
  'param-check-returns-one': {
    answers: ['error ERETURN+1'],
    defect:
      "defect 5: VFIO sPAPR's MAP_DMA and UNMAP_DMA return the value of iommu_tce_put_param_check() / " +
      'iommu_tce_clear_param_check() as it is (`ret = …_param_check(…); if (ret) return ret;`), and those macros are the ' +
      '`||` of their checks: the ioctl fails with +1 and errno 0 instead of -1 and EINVAL',
  },
  'map-past-window-end': {
    answers: ['error EINTR', 'error ESRCH'],
    defect:
      "defect 6: VFIO_IOMMU_MAP_DMA across a window's end: iommu_tce_put_param_check() checks the first entry only " +
      '(npages 1), tce_iommu_build_v2() takes a mapping reference on the region (mm_iommu_mapped_inc) before the ' +
      "hypervisor refuses the first entry past the end (H_PARAMETER), and the undo, tce_iommu_unuse_page_v2(), reads that entry's " +
      "slot of the window's userspace view, one past its end (it_userspace[it_size]): it finds no region there and drops " +
      'nothing. The ioctl fails with EINTR (H_PARAMETER, -4, returned as an errno) and the region keeps a reference no ' +
      'mapping holds: it is never released (UNREGISTER_MEMORY returns 0 and orphans it, as in defect 1; at container release ' +
      'tce_iommu_release() warns), its pages stay pinned. Where the view ends on a page boundary (a window of 512·k entries: ' +
      '2 MiB of 4 KiB pages, the 1 GiB 32-bit window) the read hits the vmalloc guard page: a kernel Oops in ' +
      'tce_iommu_unuse_page_v2, the caller killed',
    leavesRegionPinned: {
      kernelReport: /Unable to handle kernel data access on read at|Kernel access of bad area|tce_iommu_release\+|destroy_context\+/,
    },
  },
} as const satisfies Record<string, AnswerDefect>;

export type AnswerDefectName = keyof typeof ANSWER_DEFECTS;
export const ANSWER_DEFECT_NAMES = Object.keys(ANSWER_DEFECTS) as AnswerDefectName[];

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

/**
 * What a measured answer that is not the expected one means on this kernel: the known defect it shows, or (when the
 * kernel has that defect's fix) why it is not excused.
 */
export function explainAnswer(
  names: readonly AnswerDefectName[],
  measured: string,
  release: string,
): { name?: AnswerDefectName; knownDefect?: string; detail?: string } {
  for (const name of names) {
    const d: AnswerDefect = ANSWER_DEFECTS[name];
    if (!d.answers.includes(measured)) continue;
    if (d.fixedIn && hasFix(release, d.fixedIn))
      return {
        detail: `${measured} is the answer of ${d.defect.split(':')[0]}, on ${release}, which has its fix (${d.fixedIn.join(', ')})`,
      };
    return { name, knownDefect: d.defect };
  }
  return {};
}
