import { describe, expect, it } from 'vitest';
import { parseMtreeWindows, liobnOf, phbIndexOfLiobn, describeWindow } from '../../src/ddw/dma-window.js';
import { parseDdwTraceLine, pageShiftFromTrace, QemuTraceLogs } from '../../src/qemu/trace.js';

// Lines as QEMU 7.2 prints them (info mtree; -trace spapr_iommu_ddw_* with the log backend).
const MTREE = `address-space: edu
  0000000000000000-ffffffffffffffff (prio 0, i/o): tce-root-80000101
    0800000000000000-080000003fffffff (prio 0, i/o): tce-iommu-80000101
  0000000000000000-ffffffffffffffff (prio 0, i/o): tce-root-80000100
    0000000000000000-000000003fffffff (prio 0, i/o): tce-iommu-80000100
address-space: edu (again)
    0800000000000000-080000003fffffff (prio 0, i/o): tce-iommu-80000101
`;

describe('DDW host view parsing', () => {
  it('reads live windows from info mtree once per LIOBN', () => {
    expect(parseMtreeWindows(MTREE)).toEqual([
      { liobn: 0x80000100, start: 0n, size: 0x40000000n },
      { liobn: 0x80000101, start: 0x0800000000000000n, size: 0x40000000n },
    ]);
  });

  it('reads page sizes from DDW trace events, the last create winning', () => {
    const logs = new QemuTraceLogs();
    const log = logs.ddw;
    logs.feed(
      'spapr_iommu_ddw_create buid=0x800000020000001 addr=0x0, page size=0x1000, requested=0x10000000, start ' +
        'addr=0x800000000000000, liobn=0x80000101\nspapr_iommu_ddw_remove li',
    );
    logs.feed(
      'obn=0x80000101\nspapr_iommu_ddw_create buid=0x800000020000001 addr=0x0, page size=0x10000, ' +
        'requested=0x40000000, start addr=0x800000000000000, liobn=0x80000101\n',
    );
    expect(log.events.map((e) => e.kind)).toEqual(['create', 'remove', 'create']);
    expect(pageShiftFromTrace(log.events, 0x80000101)).toBe(16);
    expect(pageShiftFromTrace(log.events, 0x80000100)).toBe(12);
    expect(pageShiftFromTrace(log.events, 0x80000201)).toBeUndefined();
    expect(parseDdwTraceLine('spapr_iommu_ddw_reset buid=0x800000020000001 addr=0x0')).toEqual({ kind: 'reset', buid: 0x800000020000001n });
  });

  it('encodes LIOBNs as QEMU does', () => {
    expect(liobnOf(1, 1)).toBe(0x80000101);
    expect(phbIndexOfLiobn(0x80000201)).toBe(2);
    expect(describeWindow({ start: 0x0800000000000000n, size: 0x40000000n, pageShift: 16 })).toBe(
      '0x800000000000000+0x40000000 (64 KiB pages)',
    );
  });
});
