import { KERNEL_DEFECTS, type KernelDefect, type KernelDefectId, type KernelWithFixes, knownDefectText } from './kernel-defects.js';

/**
 * Kernel defects a step recognises by the answer an ioctl gave: a step that expects an error names the defects its
 * operation is known to show instead (scenario files: "knownDefects"), and a measured answer that is one of theirs is
 * reported as that known defect (KNOWN-DEFECT, not FAIL) on the kernels that lack its fix. On a kernel with the fix,
 * the same answer fails like any other: a regression, said so in the check's detail.
 */
export interface AnswerDefect {
  /** The answers that show it, as the check measures them: "success" or "error <class>" ("error ERETURN+1"). */
  answers: readonly string[];
  /**
   * What a map step that shows it leaves behind, declared for the run's verdicts once it has: the region's pages,
   * pinned for good (the guest balance reports them as this defect), and the kernel's reports of it (pattern).
   */
  leavesRegionPinned?: { kernelReport: RegExp };
}

/** Each defect of kernel-defects.ts an ioctl's answer can show, by the same name. */
export const ANSWER_DEFECTS = {
  'ioba-npages-ignored': { answers: ['success'] },
  'param-check-returns-one': { answers: ['error ERETURN+1'] },
  'map-past-window-end': {
    answers: ['error EINTR', 'error ESRCH'],
    leavesRegionPinned: {
      kernelReport: /Unable to handle kernel data access on read at|Kernel access of bad area|tce_iommu_release\+|destroy_context\+/,
    },
  },
} as const satisfies Record<KernelDefectId, AnswerDefect>;

export type AnswerDefectName = keyof typeof ANSWER_DEFECTS;
export const ANSWER_DEFECT_NAMES = Object.keys(ANSWER_DEFECTS) as AnswerDefectName[];

/**
 * What a measured answer that is not the expected one means on this kernel: the known defect it shows, or (when the
 * kernel has that defect's fix) why it is not excused.
 */
export function explainAnswer(
  names: readonly AnswerDefectName[],
  measured: string,
  kernel: KernelWithFixes,
): { name?: AnswerDefectName; knownDefect?: string; detail?: string } {
  const release = kernel.release;
  for (const name of names) {
    const d: AnswerDefect = ANSWER_DEFECTS[name];
    if (!d.answers.includes(measured)) continue;
    const text = knownDefectText(name, kernel);
    if (!text) {
      const k: KernelDefect = KERNEL_DEFECTS[name];
      return { detail: `${measured} is the answer of defect ${k.number}, on ${release}, which has its fix (${k.fixedIn?.join(', ')})` };
    }
    return { name, knownDefect: text };
  }
  return {};
}
