import { type Answer, type FuzzCall, listValues, U64_MASK } from './fuzz-calls.js';

/**
 * A model of what QEMU 10.0's own TCE handlers answer and write — the emulated lab, where QEMU answers every TCE
 * hypercall (TCG) — read from its source (hw/ppc/spapr_iommu.c, spapr_rtas_ddw.c, spapr_pci.c; the precise reading
 * is in docs/verdicts.md's fuzz paragraph and the hostile-expectations notes of issue 29). Pure: no lab, no I/O.
 *
 * What it holds: per PHB its two TCE tables (dma_liobn[0] the default window, [1] the dynamic one), each an array of
 * nb_table 64-bit entries (sparse here), its page shift and bus offset; nb_table 0 is a disabled window.
 */

const H_SUCCESS = 0;
const H_PARAMETER = -4;
const RTAS_SUCCESS = 0;
const RTAS_HW_ERROR = -1;
const RTAS_PARAM_ERROR = -3;

/** SPAPR_TCE_PAGE_SHIFT: the default window's pages, and the alignment H_PUT_TCE_INDIRECT asks of its list. */
const TCE_PAGE_SHIFT = 12;
/** A stuff of more entries than this is kept as one run, not entry by entry. */
const RUN_MIN = 64n;
const LIST_ALIGN_MASK = (1n << BigInt(TCE_PAGE_SHIFT)) - 1n;
/** h_put_tce_indirect: `if ((npages > 512) || (tce_list & SPAPR_TCE_PAGE_MASK)) return H_PARAMETER;`. */
const INDIRECT_MAX_NPAGES = 512n;
/** SPAPR_PCI_DMA_MAX_WINDOWS. */
const MAX_WINDOWS = 2;
/** query's "largest contiguous block" word (nret 5): a constant in rtas_ibm_query_pe_dma_window. */
const QUERY_LARGEST_BLOCK = 0x80000000;
/** SPAPR_PCI_LIOBN(i, n) = 0x80000000 | i << 8 | n; a PHB's BUID = SPAPR_PCI_BASE_BUID + index. */
const pciLiobn = (index: number, n: number) => BigInt((0x80000000 | (index << 8) | n) >>> 0);
export const SPAPR_PCI_BASE_BUID = 0x800000020000000n;

/**
 * The largest window shift minus page shift the fuzz asks of ibm,create-pe-dma-window. QEMU computes nb_table =
 * 1ULL << (window_shift - page_shift) into a uint32_t: 32 or more truncates to 0, which leaves an empty IOMMU region
 * mapped so that the next create on that liobn hits an assert (QEMU aborts); 31 asks QEMU for a 16 GiB table (30: 8
 * GiB). Those are findings of their own (hostile-guest), not something to hit by chance thousands of times: the model
 * refuses them (ModelRefusal) and the generator never makes them. 18 is the default window's own size (2 MiB of table).
 */
export const MAX_CREATE_ORDER = 18;

/** A call the model will not predict: the lab must never be given it (the generator's bug, not QEMU's). */
export class ModelRefusal extends Error {}

/** Seeded faults of the model (a model answering one case wrong must make the fuzz report a disagreement). */
export const MODEL_FAULTS = {
  'misaligned-ioba-refused':
    'the model believes QEMU refuses an ioba not aligned to the window page (as KVM does) and writes nothing; QEMU masks it',
  'partial-write-forgotten':
    'the model believes an H_STUFF_TCE or H_PUT_TCE_INDIRECT that runs off the window writes nothing (as KVM with the fixed ' +
    'bound check does); QEMU writes the entries before the end: seen only when one of them is read back',
} as const;
export type ModelFault = keyof typeof MODEL_FAULTS;

class TceTable {
  nbTable = 0n;
  pageShift = TCE_PAGE_SHIFT;
  busOffset = 0n;
  /** tcet->def_win: set by spapr_phb_dma_reset on dma_liobn[0], never cleared. */
  defWin = false;
  /**
   * The entries, sparse: single writes, and runs of one value (a stuff of many entries) — the newest write of an entry
   * wins (its stamp); an entry never written since the table was enabled is 0.
   */
  private stamp = 0;
  private points = new Map<number, { v: bigint; at: number }>();
  private runs: Array<{ from: number; to: number; v: bigint; at: number }> = [];

  constructor(
    readonly liobn: bigint,
    readonly phb: PhbModel,
  ) {}

  get enabled(): boolean {
    return this.nbTable > 0n;
  }

  /** spapr_tce_table_enable: a fresh zeroed table. */
  enable(pageShift: number, busOffset: bigint, nbTable: bigint): void {
    this.pageShift = pageShift;
    this.busOffset = busOffset;
    this.nbTable = nbTable & 0xffffffffn;
    this.points.clear();
    this.runs = [];
  }

  /** spapr_tce_table_disable: nb_table 0, the table freed. */
  disable(): void {
    this.nbTable = 0n;
    this.points.clear();
    this.runs = [];
  }

  /** The entry an ioba names after the handlers' masking, or undefined when it lies outside (index >= nb_table). */
  indexOf(ioba: bigint): bigint | undefined {
    const index = ((ioba - this.busOffset) & U64_MASK) >> BigInt(this.pageShift);
    return index < this.nbTable ? index : undefined;
  }

  read(index: bigint): bigint {
    const i = Number(index);
    let newest = this.points.get(i);
    for (const r of this.runs) if (i >= r.from && i < r.to && (!newest || r.at > newest.at)) newest = r;
    return newest?.v ?? 0n;
  }

  /**
   * The handlers' loop `for (i = 0; i < npages; ++i, ioba += page_size) { ret = put_tce_emu(...); if (ret) break; }`
   * with `ret` starting H_PARAMETER: entries from `first` on are written until one lies outside; npages 0 answers
   * H_PARAMETER having written nothing.
   */
  putRun(first: bigint | undefined, npages: bigint, values: bigint | readonly bigint[], forgetPartial = false): number {
    if (first === undefined || npages === 0n) return H_PARAMETER;
    const room = this.nbTable - first;
    if (forgetPartial && npages > room) return H_PARAMETER;
    const count = npages < room ? npages : room;
    if (typeof values === 'bigint' && count > RUN_MIN) this.writeRun(Number(first), Number(first + count), values);
    else for (let i = 0; i < Number(count); i++) this.write(Number(first) + i, typeof values === 'bigint' ? values : (values[i] ?? 0n));
    return npages > room ? H_PARAMETER : H_SUCCESS;
  }

  private write(i: number, v: bigint): void {
    this.points.set(i, { v, at: ++this.stamp });
  }

  /** One value over [from, to): older runs inside it are gone, and so are the single writes when there are few. */
  private writeRun(from: number, to: number, v: bigint): void {
    this.runs = this.runs.filter((r) => r.from < from || r.to > to);
    this.runs.push({ from, to, v, at: ++this.stamp });
    if (this.points.size <= to - from) for (const i of this.points.keys()) if (i >= from && i < to) this.points.delete(i);
  }
}

class PhbModel {
  readonly tables: [TceTable, TceTable];
  constructor(
    readonly index: number,
    readonly buid: bigint,
    readonly geometry: PhbGeometry,
  ) {
    this.tables = [new TceTable(pciLiobn(index, 0), this), new TceTable(pciLiobn(index, 1), this)];
  }

  activeWindows(): number {
    return this.tables.filter((t) => t.enabled).length;
  }

  /**
   * spapr_phb_get_free_liobn: the first disabled table in object_child_foreach's order (a GLib hash table's, not
   * the index's). Measured on QEMU 10.0.13: with both free, dma_liobn[0]'s table comes first.
   */
  freeTable(): TceTable | undefined {
    return this.tables.find((t) => !t.enabled);
  }

  /** spapr_phb_dma_reset: every window disabled, the default one enabled afresh (zeroed), def_win set. */
  dmaReset(): void {
    for (const t of this.tables) if (t.enabled) t.disable();
    const def = this.tables[0];
    def.enable(TCE_PAGE_SHIFT, this.geometry.dmaWinAddr, this.geometry.dmaWinSize >> BigInt(TCE_PAGE_SHIFT));
    def.defWin = true;
  }
}

/** A PHB as QEMU's properties have it (spapr-pci-host-bridge's defaults unless the profile sets them). */
export interface PhbGeometry {
  index: number;
  ddw: boolean;
  /** dma_win_addr, dma_win_size: the default window. */
  dmaWinAddr: bigint;
  dmaWinSize: bigint;
  /** dma64_win_addr: where a dynamic window goes while another window is active. */
  dma64WinAddr: bigint;
  /** pgsz: the page sizes a dynamic window may have (bit n = 2^n bytes). */
  pageSizeMask: bigint;
}

/** spapr-pci-host-bridge's defaults in QEMU 10.0: 1 GiB of 4 KiB pages at 0, DDWs at 2^59 of 4K, 64K, 2M or 16M pages. */
export function defaultPhb(index: number): PhbGeometry {
  return {
    index,
    ddw: true,
    dmaWinAddr: 0n,
    dmaWinSize: 0x40000000n,
    dma64WinAddr: 1n << 59n,
    pageSizeMask: (1n << 12n) | (1n << 16n) | (1n << 21n) | (1n << 24n),
  };
}

/** spapr_page_mask_to_query_mask: the page sizes as ibm,query-pe-dma-window reports them (LoPAPR's bits). */
const QUERY_PAGE_BITS: ReadonlyArray<[shift: number, bit: number]> = [
  [12, 0x01],
  [16, 0x02],
  [21, 0x100],
  [24, 0x04],
  [25, 0x08],
  [26, 0x10],
  [27, 0x20],
  [28, 0x40],
  [34, 0x80],
];

export interface ModelOptions {
  phbs: PhbGeometry[];
  /** Guest RAM: a list at a physical address inside it holds what the guest left there, which no model knows. */
  ramBytes: bigint;
  /**
   * Windows the guest kernel made for itself (PHB 0's DDW: virtio-pci asks a 64-bit DMA mask, so Linux creates a
   * direct-mapped DDW at boot, liobn 0x80000001): the model does not know their contents and refuses calls on them,
   * so the fuzz never aims at them.
   */
  foreignLiobns?: readonly bigint[];
  faults?: ReadonlySet<ModelFault>;
}

/** A window as the model has it now (for the generator's aim). */
export interface WindowView {
  liobn: bigint;
  enabled: boolean;
  busOffset: bigint;
  pageShift: number;
  nbTable: bigint;
}

export class QemuTceModel {
  private readonly phbs: PhbModel[];
  private readonly byLiobn = new Map<bigint, TceTable>();
  private readonly faults: ReadonlySet<ModelFault>;

  /**
   * The state the fuzz establishes before a sequence: every PHB reset (its default window enabled and zeroed, no
   * dynamic window), as at machine reset — the fuzz clears PHB 0's window with one H_STUFF_TCE of 0 and resets the
   * PE under test with ibm,reset-pe-dma-window.
   */
  constructor(readonly opts: ModelOptions) {
    this.faults = opts.faults ?? new Set();
    this.phbs = opts.phbs.map((g) => new PhbModel(g.index, SPAPR_PCI_BASE_BUID + BigInt(g.index), g));
    for (const p of this.phbs) {
      for (const t of p.tables) this.byLiobn.set(t.liobn, t);
      p.dmaReset();
    }
  }

  /** The windows of every PHB (enabled or not), lowest liobn first; not the foreign ones. */
  windows(): WindowView[] {
    return [...this.byLiobn.values()]
      .filter((t) => !this.opts.foreignLiobns?.includes(t.liobn))
      .map((t) => ({ liobn: t.liobn, enabled: t.enabled, busOffset: t.busOffset, pageShift: t.pageShift, nbTable: t.nbTable }))
      .sort((a, b) => (a.liobn < b.liobn ? -1 : 1));
  }

  /** The BUID of the PHB with this index. */
  buidOf(index: number): bigint {
    const p = this.phbs.find((x) => x.index === index);
    if (!p) throw new ModelRefusal(`the model has no PHB ${index}`);
    return p.buid;
  }

  /** What QEMU answers to the call, applying what it writes. peBuid: the BUID a call's buid 'pe' stands for. */
  apply(c: FuzzCall, peBuid: bigint): Answer {
    switch (c.op) {
      case 'H_GET_TCE': {
        const t = this.find(c.liobn);
        if (!t || this.refusesMisaligned(t, c.ioba)) return { rc: H_PARAMETER };
        const index = t.indexOf(this.masked(t, c.ioba));
        return index === undefined ? { rc: H_PARAMETER } : { rc: H_SUCCESS, tce: t.read(index) };
      }
      case 'H_PUT_TCE': {
        const t = this.find(c.liobn);
        if (!t || this.refusesMisaligned(t, c.ioba)) return { rc: H_PARAMETER };
        return { rc: t.putRun(t.indexOf(this.masked(t, c.ioba)), 1n, c.tce) };
      }
      case 'H_STUFF_TCE': {
        const t = this.find(c.liobn);
        // `if (npages > tcet->nb_table) return H_PARAMETER;` before anything; no check of the value's R/W bits.
        if (!t || c.npages > t.nbTable || this.refusesMisaligned(t, c.ioba)) return { rc: H_PARAMETER };
        return { rc: t.putRun(t.indexOf(this.masked(t, c.ioba)), c.npages, c.tce, this.faults.has('partial-write-forgotten')) };
      }
      case 'H_PUT_TCE_INDIRECT': {
        const t = this.find(c.liobn);
        if (!t) return { rc: H_PARAMETER };
        if (c.npages > INDIRECT_MAX_NPAGES || (this.listAddress(c) & LIST_ALIGN_MASK) !== 0n) return { rc: H_PARAMETER };
        if (this.refusesMisaligned(t, c.ioba)) return { rc: H_PARAMETER };
        return {
          rc: t.putRun(t.indexOf(this.masked(t, c.ioba)), c.npages, this.listContent(c), this.faults.has('partial-write-forgotten')),
        };
      }
      case 'query':
        return this.query(this.phbOf(c.buid, peBuid));
      case 'create':
        return this.create(this.phbOf(c.buid, peBuid), c.pageShift, c.windowShift);
      case 'remove':
        return this.remove(BigInt(c.liobn));
      case 'reset': {
        const p = this.phbOf(c.buid, peBuid);
        if (!p?.geometry.ddw) return { status: RTAS_PARAM_ERROR };
        p.dmaReset();
        return { status: RTAS_SUCCESS };
      }
    }
  }

  /** spapr_tce_find_by_liobn: a liobn with any of its upper 32 bits set names no table; disabled tables are found. */
  private find(liobn: bigint): TceTable | undefined {
    if (this.opts.foreignLiobns?.includes(liobn)) throw new ModelRefusal(`liobn 0x${liobn.toString(16)} is the guest kernel's own window`);
    return liobn >> 32n ? undefined : this.byLiobn.get(liobn);
  }

  /** `ioba &= IOMMU_PAGE_MASK(tcet->page_shift)`: every handler rounds the ioba down to its window page. */
  private masked(t: TceTable, ioba: bigint): bigint {
    return ioba & ~((1n << BigInt(t.pageShift)) - 1n) & U64_MASK;
  }

  private refusesMisaligned(t: TceTable, ioba: bigint): boolean {
    return this.faults.has('misaligned-ioba-refused') && (ioba & ((1n << BigInt(t.pageShift)) - 1n)) !== 0n;
  }

  private listAddress(c: Extract<FuzzCall, { op: 'H_PUT_TCE_INDIRECT' }>): bigint {
    // The module's page is page aligned; only its offset moves the list off the alignment.
    return c.list.at === 'phys' ? c.list.phys : c.list.at === 'offset' ? BigInt(c.list.offset) : 0n;
  }

  /**
   * What ldq_be_phys reads from the list: the module's values (its buffer is zeroed first, so zeros after them); at a
   * physical address outside RAM and any device, unassigned_mem_read's 0 for every entry.
   */
  private listContent(c: Extract<FuzzCall, { op: 'H_PUT_TCE_INDIRECT' }>): bigint[] {
    if (c.list.at !== 'phys') return listValues(c);
    if (c.list.phys < this.opts.ramBytes) throw new ModelRefusal(`a list in guest RAM (${c.list.phys}) holds what no model knows`);
    return [];
  }

  private phbOf(buid: 'pe' | bigint, peBuid: bigint): PhbModel | undefined {
    const b = buid === 'pe' ? peBuid : buid;
    return this.phbs.find((p) => p.buid === b);
  }

  private query(p: PhbModel | undefined): Answer {
    if (!p?.geometry.ddw) return { status: RTAS_PARAM_ERROR };
    const pgmask = QUERY_PAGE_BITS.reduce((m, [shift, bit]) => (p.geometry.pageSizeMask & (1n << BigInt(shift)) ? m | bit : m), 0);
    return { status: RTAS_SUCCESS, out: [MAX_WINDOWS - p.activeWindows(), QUERY_LARGEST_BLOCK, pgmask, 0] };
  }

  private create(p: PhbModel | undefined, pageShift: number, windowShift: number): Answer {
    if (!p?.geometry.ddw) return { status: RTAS_PARAM_ERROR };
    if (pageShift > 63 || windowShift > 63)
      throw new ModelRefusal(`create with shifts ${pageShift}/${windowShift}: 1ULL << shift is undefined`);
    if (!(p.geometry.pageSizeMask & (1n << BigInt(pageShift))) || windowShift < pageShift) return { status: RTAS_PARAM_ERROR };
    if (windowShift - pageShift > MAX_CREATE_ORDER)
      throw new ModelRefusal(`create with window shift - page shift = ${windowShift - pageShift} (> ${MAX_CREATE_ORDER}): not issued`);
    const windows = p.activeWindows();
    const t = p.freeTable();
    if (!t || windows === MAX_WINDOWS) return { status: RTAS_HW_ERROR };
    const addr = windows === 0 ? p.geometry.dmaWinAddr : p.geometry.dma64WinAddr;
    t.enable(pageShift, addr, 1n << BigInt(windowShift - pageShift));
    return { status: RTAS_SUCCESS, out: [Number(t.liobn), Number(addr >> 32n), Number(addr & 0xffffffffn)] };
  }

  private remove(liobn: bigint): Answer {
    const t = this.find(liobn);
    if (!(t?.phb.geometry.ddw && t.enabled)) return { status: RTAS_PARAM_ERROR };
    const defWinRemoved = t.defWin;
    t.disable();
    // PAPR: removing the last window restores the default one, unless the window removed was the default one.
    if (t.phb.activeWindows() === 0 && !defWinRemoved) t.phb.dmaReset();
    return { status: RTAS_SUCCESS };
  }
}
