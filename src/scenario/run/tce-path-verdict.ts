import { liobnOf } from '../../ddw/dma-window.js';
import { type Profile, runsUnderKvm } from '../../qemu/profile.js';
import type { TcePathTrace } from '../../qemu/trace.js';
import type { CheckRecorder } from '../checks.js';

/**
 * Whether a KVM lab ran the production path for its passed-through devices: the guest's H_PUT_TCE,
 * H_PUT_TCE_INDIRECT and H_STUFF_TCE handled in the host kernel (KVM_CREATE_SPAPR_TCE_64 tables, the VFIO group
 * attached to them with KVM_DEV_VFIO_GROUP_SET_SPAPR_TCE), not by QEMU — judged from QEMU's own trace (qemu/trace.ts).
 */

const hex = (n: number) => `0x${n.toString(16)}`;

/** The labs the judgement applies to: KVM with a device passed through. */
export function judgesTcePath(profile: Profile): boolean {
  return runsUnderKvm(profile) && profile.devices.some((d) => d.driver === 'vfio-pci');
}

/**
 * Three checks, for the PHBs that carry a passed-through device: each of their TCE tables is in the kernel, the VFIO
 * group is attached to each, and QEMU handled none of the guest's updates to them. `stderr` explains a fallback.
 */
export function judgeTcePath(trace: TcePathTrace, profile: Profile, checks: CheckRecorder, stderr: string): void {
  const vfioPhbs = profile.phbs.filter((p) => profile.devices.some((d) => d.driver === 'vfio-pci' && d.phb === p.id));
  const liobns = new Set(vfioPhbs.flatMap((p) => [liobnOf(p.index, 0), liobnOf(p.index, 1)]));
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
