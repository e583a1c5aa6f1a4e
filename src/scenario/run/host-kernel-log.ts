import type { CheckRecorder } from '../checks.js';
import { judgeKernelLog, KERNEL_REPORT_NAMES, scanKernelLog } from '../kernel-log.js';
import type { GuestHost } from './guest-host.js';

/**
 * The lab host's kernel is under test too where the host is a guest (kvm-lab-host: KVM-HV, the kvm-vfio device and
 * the in-kernel TCE code run there): after the lab is gone, its log must hold no kernel report. Read through its
 * agent (dmesg) and from its console.
 */
export async function judgeHostKernelLog(guestHost: GuestHost, checks: CheckRecorder): Promise<void> {
  const dmesg = guestHost.lab.process.running
    ? await guestHost.agent.exec(['dmesg'], 10_000).then(
        (r) => r.stdout,
        () => '',
      )
    : '';
  const verdict = judgeKernelLog(scanKernelLog(`${guestHost.lab.process.console.tail(100_000)}\n${dmesg}`), []);
  checks.record(
    `host kernel logged no ${KERNEL_REPORT_NAMES.join(', ')}`,
    verdict.pass,
    'none',
    verdict.measured,
    `the lab host is a guest (${guestHost.kernelRelease}): ${dmesg ? 'its console and dmesg' : 'its console only (dmesg was not read)'}`,
  );
}
