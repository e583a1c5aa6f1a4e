import type { CheckRecorder } from '../checks.js';
import { type ExpectedKernelReport, judgeKernelLog, KERNEL_REPORT_NAMES, scanKernelLog } from '../kernel-log.js';
import type { LabHost } from './lab-host.js';

/**
 * The lab host's kernel is under test too wherever the lab exercises it (KVM-HV, the kvm-vfio device, the in-kernel
 * TCE code, VFIO): after the lab is gone, its log since the run began must hold no kernel report. Where its kernel is
 * not under test, or its log cannot be read, the check is not judged and says why.
 */
export async function judgeHostKernelLog(labHost: LabHost, checks: CheckRecorder, expected: ExpectedKernelReport[] = []): Promise<void> {
  const name = `host kernel logged no ${KERNEL_REPORT_NAMES.join(', ')}`;
  const log = await labHost.kernelLog();
  if ('notJudged' in log) {
    checks.notApplicable(name, log.notJudged);
    return;
  }
  const verdict = judgeKernelLog(scanKernelLog(log.text), expected);
  checks.record(name, verdict.pass, 'none', verdict.measured, log.source, verdict.knownDefect);
}
