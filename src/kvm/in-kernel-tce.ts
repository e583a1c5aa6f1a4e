import type { CheckRecorder } from '../scenario/checks.js';
import type { Profile } from '../qemu/profile.js';

/**
 * Whether a KVM lab ran the production path for its passed-through devices: the guest's H_PUT_TCE,
 * H_PUT_TCE_INDIRECT and H_STUFF_TCE handled in the host kernel (KVM_CREATE_SPAPR_TCE_64 tables, the VFIO group
 * attached to them with KVM_DEV_VFIO_GROUP_SET_SPAPR_TCE), not by QEMU. QEMU's own trace says which: it logs every
 * TCE table it creates with the in-kernel table's fd (-1: emulated in QEMU), every group attached to one, and
 * every TCE update it handles itself.
 */

/** QEMU's trace events the judgement reads (from the lab's stderr, like the DDW trace). */
export const TCE_PATH_TRACE_EVENTS = [
  'spapr_iommu_new_table',
  'vfio_spapr_group_attach',
  'spapr_iommu_pci_put',
  'spapr_iommu_pci_indirect',
  'spapr_iommu_pci_stuff',
] as const;

/** What the trace said: tables (liobn → in-kernel fd, −1 when emulated), attachments, and userspace TCE updates per liobn. */
export interface TcePathTrace {
  tables: Array<{ liobn: number; fd: number }>;
  attached: Array<{ groupFd: number; tableFd: number }>;
  userspaceUpdates: Map<number, number>;
}

const NEW_TABLE = /spapr_iommu_new_table liobn=0x([0-9a-f]+) table=\S+ fd=(-?\d+)/;
const GROUP_ATTACH = /vfio_spapr_group_attach\D*?(\d+)\D+(\d+)/;
const USERSPACE_UPDATE = /spapr_iommu_pci_(?:put|indirect|stuff) liobn=0x([0-9a-f]+)/;

/** Reads the trace lines of QEMU's stderr as they come (chunks may split lines). */
export class TcePathTraceLog implements TcePathTrace {
  readonly tables: TcePathTrace['tables'] = [];
  readonly attached: TcePathTrace['attached'] = [];
  readonly userspaceUpdates = new Map<number, number>();
  private partial = '';

  feed(chunk: string): void {
    const lines = (this.partial + chunk).split('\n');
    this.partial = lines.pop() ?? '';
    for (const line of lines) this.line(line);
  }

  private line(line: string): void {
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

/** sPAPR's logical I/O bus numbers of a PHB: window n of PHB index i is 0x80000000 | i << 8 | n (0: 32-bit, 1: DDW). */
export function phbLiobns(phbIndex: number): number[] {
  return [0, 1].map((n) => (0x80000000 | (phbIndex << 8) | n) >>> 0);
}

const hex = (n: number) => `0x${n.toString(16)}`;

/** The labs the judgement applies to: KVM with a device passed through. */
export function judgesTcePath(profile: Profile): boolean {
  return profile.qemu.accel === 'kvm' && profile.devices.some((d) => d.driver === 'vfio-pci');
}

/**
 * Three checks, for the PHBs that carry a passed-through device: each of their TCE tables is in the kernel, the VFIO
 * group is attached to each, and QEMU handled none of the guest's updates to them. `stderr` explains a fallback.
 */
export function judgeTcePath(trace: TcePathTrace, profile: Profile, checks: CheckRecorder, stderr: string): void {
  const vfioPhbs = profile.phbs.filter((p) => profile.devices.some((d) => d.driver === 'vfio-pci' && d.phb === p.id));
  const liobns = new Set(vfioPhbs.flatMap((p) => phbLiobns(p.index)));
  // A table is traced again at every machine reset (and a DDW window at each creation): the last of each liobn counts.
  const tables = [...new Map(trace.tables.filter((t) => liobns.has(t.liobn)).map((t) => [t.liobn, t])).values()];
  const emulated = tables.filter((t) => t.fd < 0);
  const why = stderr
    .split('\n')
    // QEMU's own words (KVM: …, qemu-system-ppc64: …), not the trace lines themselves.
    .filter((l) => /kvm|tce|spapr/i.test(l) && !/^(?:\d+@\S+:)?[a-z0-9_]+ \S+=/.test(l))
    .slice(-3)
    .join(' | ');
  checks.record(
    'KVM: the TCE tables of the passed-through device are in the kernel',
    tables.length > 0 && emulated.length === 0,
    'every table of its PHB created in the kernel (fd ≥ 0)',
    tables.length ? tables.map((t) => `liobn ${hex(t.liobn)} fd ${t.fd}`).join(', ') : 'no table of its PHB was traced',
    emulated.length
      ? `QEMU emulates ${emulated.map((t) => hex(t.liobn)).join(', ')} in userspace (KVM_CREATE_SPAPR_TCE_64 refused or not offered)${why ? `: ${why}` : ''}`
      : tables.length
        ? undefined
        : 'QEMU traced no spapr_iommu_new_table for it: the trace events are missing from its argv, or QEMU was built without them',
  );
  const kernelFds = new Set(tables.filter((t) => t.fd >= 0).map((t) => t.fd));
  const attachedFds = new Set(trace.attached.map((a) => a.tableFd).filter((fd) => kernelFds.has(fd)));
  checks.record(
    'KVM: the VFIO group is attached to its in-kernel TCE tables',
    kernelFds.size > 0 && [...kernelFds].every((fd) => attachedFds.has(fd)),
    `every in-kernel table fd attached (${[...kernelFds].join(', ') || 'none'})`,
    trace.attached.length
      ? [...new Set(trace.attached.map((a) => `group fd ${a.groupFd} → table fd ${a.tableFd}`))].join(', ')
      : 'no attachment traced',
    kernelFds.size > 0 && ![...kernelFds].every((fd) => attachedFds.has(fd))
      ? "KVM_DEV_VFIO_GROUP_SET_SPAPR_TCE was not done for every table: the host kernel cannot map the guest's TCEs into the device's IOMMU"
      : undefined,
  );
  const updates = [...liobns].map((l) => [l, trace.userspaceUpdates.get(l) ?? 0] as const).filter(([, n]) => n > 0);
  checks.record(
    "KVM: QEMU handled none of the guest's TCE updates for the device",
    updates.length === 0,
    0,
    updates.reduce((sum, [, n]) => sum + n, 0),
    updates.length
      ? `H_PUT_TCE/H_PUT_TCE_INDIRECT/H_STUFF_TCE reached QEMU for ${updates.map(([l, n]) => `${hex(l)} (${n})`).join(', ')}: the in-kernel path was bypassed`
      : `userspace updates traced per liobn of its PHB: ${[...liobns].map(hex).join(', ')} none`,
  );
}
