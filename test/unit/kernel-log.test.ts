import { describe, expect, it } from 'vitest';
import { describeReports, judgeKernelLog, scanKernelLog } from '../../src/scenario/kernel-log.js';

// Report first lines as Linux prints them (6.12 / 7.x, powerpc), with the lines that follow.
const warning = `[   95.211630] ------------[ cut here ]------------
[   95.211780] WARNING: CPU: 0 PID: 52 at arch/powerpc/mm/book3s64/mmu_context.c:276 destroy_context+0xe0/0xf0
[   95.212001] Modules linked in: vfio_pci vfio_pci_core vfio_iommu_spapr_tce vfio rpadlpar_io rpaphp
[   95.212230] CPU: 0 UID: 0 PID: 52 Comm: khugepaged Not tainted 6.12.107+deb13-powerpc64le #1  Debian 6.12.107-1
[   95.212500] NIP:  c0000000000a1b20 LR: c0000000000a1ab4 CTR: 0000000000000000

[   95.213000] ---[ end trace 0000000000000000 ]---`;

describe('kernel log verdict', () => {
  it('finds every kind of report, once each, with the lines after it', () => {
    const log = [
      'Linux version 6.12.107+deb13-powerpc64le',
      warning,
      '[  120.000000] watchdog: BUG: soft lockup - CPU#0 stuck for 22s! [worker:99]',
      '[  121.000000] rcu: INFO: rcu_sched self-detected stall on CPU',
      '[  122.000000] INFO: task drmgr:412 blocked for more than 120 seconds.',
      '[  123.000000] BUG: Kernel NULL pointer dereference on read at 0x00000010',
      '[  123.000100] Oops: Kernel access of bad area, sig: 11 [#1]',
      '[  124.000000] NMI watchdog: Watchdog detected hard LOCKUP on cpu 1',
      '[  125.000000] Kernel panic - not syncing: Fatal exception',
    ].join('\n');
    const reports = scanKernelLog(`${log}\n${warning}`); // the console and dmesg both carry the WARNING
    expect(reports.map((r) => r.kind)).toEqual(['WARNING', 'soft lockup', 'RCU stall', 'hung task', 'BUG', 'Oops', 'hard lockup', 'panic']);
    expect(reports[0]!.line).toBe('WARNING: CPU: 0 PID: 52 at arch/powerpc/mm/book3s64/mmu_context.c:276 destroy_context+0xe0/0xf0');
    expect(reports[0]!.excerpt[0]).toMatch(/^Modules linked in: vfio_pci/);
    expect(reports[0]!.excerpt).toHaveLength(3); // stops at the blank line
  });

  it("reads a report where the console shell's prompt came first on the line as the same report dmesg has", () => {
    const console = '~ # \x1b[6n[    5.732997] WARNING: CPU: 0 PID: 1 at tcelab/seeded.c:1 seeded_fault+0x0/0x10\n';
    const dmesg = '[    5.732997] WARNING: CPU: 0 PID: 1 at tcelab/seeded.c:1 seeded_fault+0x0/0x10\n';
    const reports = scanKernelLog(`${console}${dmesg}`);
    expect(reports.map((r) => r.line)).toEqual(['WARNING: CPU: 0 PID: 1 at tcelab/seeded.c:1 seeded_fault+0x0/0x10']);
  });

  it('passes a clean log, and what only looks like a report', () => {
    const clean =
      '[    0.1] Linux version 6.12\n[    0.245845] WARNING: nvram corruption detected: 0-length partition\n[    ' +
      '1.2] vfio-pci 0001:00:00.0: enabling device\nTCELAB-INIT-READY kernel=6.12 machine=ppc64le\nWARNINGS: none\n';
    expect(scanKernelLog(clean)).toEqual([]);
    expect(judgeKernelLog([], [])).toEqual({ pass: true, measured: 'none' });
  });

  it('a report a scenario provokes on purpose is a known defect; any other report fails', () => {
    const expected = [{ pattern: /destroy_context/, knownDefect: 'defect 1' }];
    const only = judgeKernelLog(scanKernelLog(warning), expected);
    expect(only).toMatchObject({ pass: false, knownDefect: 'defect 1' });
    const more = judgeKernelLog(scanKernelLog(`${warning}\n[ 2.0] Oops: Kernel access of bad area, sig: 11 [#1]`), expected);
    expect(more.pass).toBe(false);
    expect(more.knownDefect).toBeUndefined();
    expect(describeReports(scanKernelLog(warning))).toMatch(
      /^WARNING: WARNING: CPU: 0 PID: 52 at .*destroy_context\+0xe0\/0xf0 \| Modules linked in/,
    );
  });
});
