import type { Profile } from './profile.js';

/**
 * QEMU's trace (the log backend, on stderr) is the host's own record of what it did for the guest: the DMA windows it
 * created and removed, the TCE tables it made (in the kernel or not) and the TCE updates it handled itself. Each traced
 * concern is one entry of QEMU_TRACES: the events the argv enables (where they apply) and the log that reads them.
 */

export type DdwTraceEvent =
  | { kind: 'create'; buid: bigint; pageSize: bigint; requested: bigint; start: bigint; liobn: number }
  | { kind: 'remove'; liobn: number }
  | { kind: 'reset'; buid: bigint };

const hexGroup = '(0x[0-9a-f]+)';
const DDW_CREATE_TRACE = new RegExp(
  `spapr_iommu_ddw_create buid=${hexGroup} addr=0x[0-9a-f]+, page size=${hexGroup}, requested=${hexGroup}, start addr=${hexGroup}, liobn=${hexGroup}`,
);

/** Parses QEMU's spapr_iommu_ddw_* trace lines. */
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

/** One traced concern's reader: it is given whole lines. */
interface TraceReader {
  line(line: string): void;
}

/** The DDW create/remove/reset events (page size included): the host's record of each DMA window. */
export class DdwTraceLog implements TraceReader {
  readonly events: DdwTraceEvent[] = [];

  line(line: string): void {
    const e = parseDdwTraceLine(line);
    if (e) this.events.push(e);
  }
}

/** What the trace said of TCE tables: tables (liobn → in-kernel fd, −1 when emulated), attachments, and userspace TCE updates per liobn. */
export interface TcePathTrace {
  tables: Array<{ liobn: number; fd: number }>;
  attached: Array<{ groupFd: number; tableFd: number }>;
  userspaceUpdates: Map<number, number>;
}

const NEW_TABLE = /spapr_iommu_new_table liobn=0x([0-9a-f]+) table=\S+ fd=(-?\d+)/;
const GROUP_ATTACH = /vfio_spapr_group_attach\D*?(\d+)\D+(\d+)/;
const USERSPACE_UPDATE = /spapr_iommu_pci_(?:put|indirect|stuff) liobn=0x([0-9a-f]+)/;

/**
 * Whether the guest's H_PUT_TCE, H_PUT_TCE_INDIRECT and H_STUFF_TCE were handled in the host kernel: QEMU logs every TCE
 * table it creates with the in-kernel table's fd (-1: emulated in QEMU), every group attached to one, and every TCE
 * update it handles itself.
 */
export class TcePathTraceLog implements TcePathTrace, TraceReader {
  readonly tables: TcePathTrace['tables'] = [];
  readonly attached: TcePathTrace['attached'] = [];
  readonly userspaceUpdates = new Map<number, number>();

  line(line: string): void {
    let m = NEW_TABLE.exec(line);
    if (m) {
      this.tables.push({ liobn: Number.parseInt(m[1]!, 16), fd: Number(m[2]) });
      return;
    }
    m = GROUP_ATTACH.exec(line);
    if (m) {
      this.attached.push({ groupFd: Number(m[1]), tableFd: Number(m[2]) });
      return;
    }
    m = USERSPACE_UPDATE.exec(line);
    if (m) {
      const liobn = Number.parseInt(m[1]!, 16);
      this.userspaceUpdates.set(liobn, (this.userspaceUpdates.get(liobn) ?? 0) + 1);
    }
  }
}

const passesThrough = (profile: Profile) => profile.devices.some((d) => d.driver === 'vfio-pci');

/** What QEMU traces, a concern an entry: a new concern is one more entry here and one more log in QemuTraceLogs. */
export const QEMU_TRACES = {
  /** Every lab: the host's view of each window (ddw/host-view.ts) takes its page size from here. */
  ddw: { events: ['spapr_iommu_ddw_create', 'spapr_iommu_ddw_remove', 'spapr_iommu_ddw_reset'], applies: (_: Profile) => true },
  /** Where a device is passed through: whether KVM handled its TCEs (the runner's TCE-path verdicts). */
  tcePath: {
    events: [
      'spapr_iommu_new_table',
      'vfio_spapr_group_attach',
      'spapr_iommu_pci_put',
      'spapr_iommu_pci_indirect',
      'spapr_iommu_pci_stuff',
    ],
    applies: passesThrough,
  },
} as const satisfies Record<string, { events: readonly string[]; applies: (profile: Profile) => boolean }>;

/** The `-trace` options of a lab's argv. */
export function traceArgs(profile: Profile): string[] {
  return Object.values(QEMU_TRACES)
    .filter((t) => t.applies(profile))
    .flatMap((t) => t.events.flatMap((e) => ['-trace', e]));
}

/** Every traced concern's log, fed QEMU's stderr as it comes (chunks may split lines). */
export class QemuTraceLogs {
  readonly ddw = new DdwTraceLog();
  readonly tcePath = new TcePathTraceLog();
  private readonly readers: Record<keyof typeof QEMU_TRACES, TraceReader> = { ddw: this.ddw, tcePath: this.tcePath };
  private partial = '';

  feed(chunk: string): void {
    const lines = (this.partial + chunk).split('\n');
    this.partial = lines.pop() ?? '';
    for (const line of lines) for (const reader of Object.values(this.readers)) reader.line(line);
  }
}
