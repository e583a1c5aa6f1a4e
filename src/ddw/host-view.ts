import type { QmpClient } from '../qmp/qmp-client.js';
import type { Profile } from '../qemu/profile.js';
import { type DdwTraceLog, pageShiftFromTrace } from '../qemu/trace.js';
import { parseMtreeWindows, phbIndexOfLiobn, type DmaWindow } from './dma-window.js';

export interface PhbDmaState {
  phb: string;
  index: number;
  ddw: boolean;
  dma32Start: bigint;
  dma32Size: bigint;
  dma64Start: bigint;
  /** Bitmap of the page sizes the PHB offers for DDW. */
  pageSizeMask: bigint;
}

/**
 * What QEMU knows about every PHB's DMA windows: QOM for the PHB's DMA
 * configuration, `info mtree` for the windows that exist now (a removed
 * window's region has size 0 and is not listed), the DDW trace for their page sizes.
 */
export class HostDdwView {
  constructor(
    private readonly qmp: QmpClient,
    private readonly trace: DdwTraceLog,
    private readonly phbs: Profile['phbs'],
  ) {}

  async phbState(phb: string): Promise<PhbDmaState> {
    const path = `/machine/peripheral/${phb}`;
    const get = (p: string) => this.qmp.qomGet<number | bigint | boolean>(path, p);
    const [index, ddw, dma32Start, dma32Size, dma64Start, pgsz] = await Promise.all([
      get('index'),
      get('ddw'),
      get('dma_win_addr'),
      get('dma_win_size'),
      get('dma64_win_addr'),
      get('pgsz'),
    ]);
    return {
      phb,
      index: Number(index),
      ddw: Boolean(ddw),
      dma32Start: BigInt(dma32Start as number),
      dma32Size: BigInt(dma32Size as number),
      dma64Start: BigInt(dma64Start as number),
      pageSizeMask: BigInt(pgsz as number),
    };
  }

  /** Every live window of the profile's PHBs (and of hot-plugged ones passed in). */
  async windows(extraPhbs: Array<{ id: string; index: number }> = []): Promise<DmaWindow[]> {
    const mtree = await this.qmp.humanMonitorCommand('info mtree', 30_000);
    const byIndex = new Map([...this.phbs, ...extraPhbs].map((p) => [p.index, p.id]));
    const out: DmaWindow[] = [];
    for (const w of parseMtreeWindows(mtree)) {
      const phb = byIndex.get(phbIndexOfLiobn(w.liobn));
      if (!phb) continue;
      out.push({ phb, liobn: w.liobn, start: w.start, size: w.size, pageShift: pageShiftFromTrace(this.trace.events, w.liobn) ?? -1 });
    }
    return out;
  }
}
