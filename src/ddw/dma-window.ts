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
