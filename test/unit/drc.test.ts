import { describe, expect, it } from 'vitest';
import { drcName, pciDrcIndex, phbDrcIndex, phbDeviceTreeNode, findInQueryPci, DRC_TYPE_PCI, DRC_TYPE_PHB } from '../../src/hotplug/drc.js';

describe('DRC numbering (QEMU pseries)', () => {
  it('derives indexes and names from PHB index and devfn', () => {
    // Seen in QOM: /machine/peripheral/phb1/dr-connector[1073807360] with id 65536.
    expect(pciDrcIndex(1, 0, 0, 0)).toBe(1073807360);
    expect(pciDrcIndex(2, 0, 0, 0)).toBe(0x40020000);
    expect(pciDrcIndex(2, 0, 3, 1)).toBe(0x40020019);
    expect(phbDrcIndex(2)).toBe(0x20000002);
    expect(drcName(DRC_TYPE_PCI, 131072)).toBe('C131072');
    expect(drcName(DRC_TYPE_PHB, 2)).toBe('PHB 2');
    expect(phbDeviceTreeNode(2)).toBe('pci@800000020000002');
  });

  it('finds a device in a query-pci reply', () => {
    const reply = [
      { bus: 0, devices: [{ bus: 0, slot: 0, function: 0, qdev_id: 'edu1' }] },
      { bus: 0, devices: [{ bus: 0, slot: 2, function: 0, qdev_id: 'hp0' }] },
    ];
    expect(findInQueryPci(reply, 'hp0')).toEqual({ bus: 0, slot: 2, fn: 0 });
    expect(findInQueryPci(reply, 'nope')).toBeUndefined();
  });
});
