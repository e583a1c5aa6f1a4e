/**
 * A DMA window of a PHB as the host (QEMU) sees it. LIOBNs encode the PHB
 * index and window number: SPAPR_PCI_LIOBN(index, n) = 0x80000000 | index << 8 | n;
 * window 0 is the default 32-bit window, window 1 the dynamic 64-bit one.
 */
export interface DmaWindow {
  phb: string;
  liobn: number;
  start: bigint;
  size: bigint;
  pageShift: number;
}

export function liobnOf(phbIndex: number, window: number): number {
  return (0x80000000 | (phbIndex << 8) | window) >>> 0;
}

export function phbIndexOfLiobn(liobn: number): number {
  return (liobn >>> 8) & 0xff;
}

export function hex(n: bigint | number): string {
  return `0x${n.toString(16)}`;
}

export function describeWindow(w: Pick<DmaWindow, 'start' | 'size' | 'pageShift'>): string {
  return `${hex(w.start)}+${hex(w.size)} (${2 ** w.pageShift / 1024} KiB pages)`;
}

/** A list of windows as one comparable line: `liobn:start+size (page size)`, or "none". */
export function summarizeWindows(ws: DmaWindow[]): string {
  return ws.map((w) => `${w.liobn.toString(16)}:${describeWindow(w)}`).join(', ') || 'none';
}

/** Parses "info mtree": the tce-iommu-<liobn> regions that have a size, once per LIOBN. */
export function parseMtreeWindows(mtree: string): Array<{ liobn: number; start: bigint; size: bigint }> {
  const out = new Map<number, { liobn: number; start: bigint; size: bigint }>();
  const re = /^\s*([0-9a-f]{16})-([0-9a-f]{16}) \([^)]*\): tce-iommu-([0-9a-f]{8})\s*$/gm;
  for (const m of mtree.matchAll(re)) {
    const start = BigInt(`0x${m[1]}`);
    const end = BigInt(`0x${m[2]}`);
    const liobn = parseInt(m[3]!, 16);
    if (!out.has(liobn)) out.set(liobn, { liobn, start, size: end - start + 1n });
  }
  return [...out.values()].sort((a, b) => a.liobn - b.liobn);
}

export type DdwTraceEvent =
  | { kind: 'create'; buid: bigint; pageSize: bigint; requested: bigint; start: bigint; liobn: number }
  | { kind: 'remove'; liobn: number }
  | { kind: 'reset'; buid: bigint };

const hexGroup = '(0x[0-9a-f]+)';
const DDW_CREATE_TRACE = new RegExp(
  `spapr_iommu_ddw_create buid=${hexGroup} addr=0x[0-9a-f]+, page size=${hexGroup}, requested=${hexGroup}, start addr=${hexGroup}, liobn=${hexGroup}`,
);

/** Parses QEMU's spapr_iommu_ddw_* trace lines (log backend, on stderr). */
export function parseDdwTraceLine(line: string): DdwTraceEvent | undefined {
  let m = DDW_CREATE_TRACE.exec(line);
  if (m)
    return {
      kind: 'create',
      buid: BigInt(m[1]!),
      pageSize: BigInt(m[2]!),
      requested: BigInt(m[3]!),
      start: BigInt(m[4]!),
      liobn: parseInt(m[5]!, 16),
    };
  m = /spapr_iommu_ddw_remove liobn=(0x[0-9a-f]+)/.exec(line);
  if (m) return { kind: 'remove', liobn: parseInt(m[1]!, 16) };
  m = /spapr_iommu_ddw_reset buid=(0x[0-9a-f]+)/.exec(line);
  if (m) return { kind: 'reset', buid: BigInt(m[1]!) };
  return undefined;
}

/** Page shift of a window from the trace: the last create for its LIOBN; window 0 is always 4K. */
export function pageShiftFromTrace(events: DdwTraceEvent[], liobn: number): number | undefined {
  if ((liobn & 0xff) === 0) return 12;
  for (let i = events.length - 1; i >= 0; i--) {
    const e = events[i]!;
    if (e.kind === 'create' && e.liobn === liobn) return Math.log2(Number(e.pageSize));
  }
  return undefined;
}
