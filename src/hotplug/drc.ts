import type { QmpPciBus } from '../qmp/qmp-client.js';

/**
 * Dynamic Reconfiguration Connectors as QEMU's pseries machine numbers them
 * (hw/ppc/spapr_drc.c, spapr_pci.c): index = type << 28 | id, and the name the
 * guest's drmgr wants is the type's prefix followed by the id.
 */
export const DRC_TYPE_PHB = 0x2;
export const DRC_TYPE_PCI = 0x4;

export function phbDrcIndex(phbIndex: number): number {
  return ((DRC_TYPE_PHB << 28) | phbIndex) >>> 0;
}

/** PCI slot DRC: id = phb index << 16 | bus << 8 | devfn. */
export function pciDrcIndex(phbIndex: number, bus: number, slot: number, fn: number): number {
  return ((DRC_TYPE_PCI << 28) | (phbIndex << 16) | (bus << 8) | (slot << 3) | fn) >>> 0;
}

export function drcName(type: number, id: number): string {
  return type === DRC_TYPE_PHB ? `PHB ${id}` : `C${id}`;
}

/** The device-tree node of a PHB in the guest: pci@<BUID>, BUID = 0x800000020000000 + index. */
export function phbDeviceTreeNode(phbIndex: number): string {
  return `pci@${(0x800000020000000n + BigInt(phbIndex)).toString(16)}`;
}

/** What findInQueryPci reads of a query-pci bus. */
type PciBusAddresses = { devices?: Array<Pick<QmpPciBus['devices'][number], 'bus' | 'slot' | 'function' | 'qdev_id'>> };

/** Finds a device's bus/slot/function in a query-pci reply. */
export function findInQueryPci(reply: PciBusAddresses[], qdevId: string): { bus: number; slot: number; fn: number } | undefined {
  for (const b of reply) {
    for (const d of b.devices ?? []) {
      if (d.qdev_id === qdevId) return { bus: d.bus, slot: d.slot, fn: d.function };
    }
  }
  return undefined;
}
