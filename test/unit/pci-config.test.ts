import { describe, expect, it } from 'vitest';
import { capabilities, configMismatches, configWriteBack, unmigratedDevice } from '../../src/snapshot/pci-config.js';

/** An edu's configuration as a guest reads it after boot: BAR0 assigned, MSI (64-bit, one vector) at 0x40. */
function eduConfig(over: (c: Buffer) => void = () => {}): Buffer {
  const c = Buffer.alloc(256);
  c.writeUInt16LE(0x1234, 0);
  c.writeUInt16LE(0x11e8, 2);
  c.writeUInt16LE(0x0006, 0x04); // memory space, bus master
  c.writeUInt16LE(0x0010, 0x06); // a capability list
  c.writeUInt32LE(0x80000000, 0x10);
  c[0x34] = 0x40;
  c[0x3c] = 0x12;
  c[0x3d] = 1;
  c[0x40] = 0x05; // MSI, last in the list
  c[0x41] = 0x00;
  c.writeUInt16LE(0x0081, 0x42); // 64-bit, enabled
  c.writeUInt32LE(0xfee00000, 0x44);
  c.writeUInt32LE(0x00000001, 0x48);
  c.writeUInt16LE(0x4021, 0x4c);
  over(c);
  return c;
}

describe('PCI configuration of devices QEMU does not migrate', () => {
  it('edu is one: QEMU registers no migration state for it', () => {
    expect(unmigratedDevice('edu')).toMatchObject({ vendor: 0x1234, device: 0x11e8 });
    expect(unmigratedDevice('e1000e')).toBeUndefined();
  });

  it('writes back the BARs first, then the header, MSI (its control after its message), the command register last', () => {
    const regs = configWriteBack(eduConfig(), 'edu1');
    expect(regs.map((r) => r.name)).toEqual([
      'BAR0',
      'BAR1',
      'BAR2',
      'BAR3',
      'BAR4',
      'BAR5',
      'expansion ROM',
      'cache line size',
      'latency timer',
      'interrupt line',
      'MSI address',
      'MSI upper address',
      'MSI data',
      'MSI control',
      'command',
    ]);
    const byName = Object.fromEntries(regs.map((r) => [r.name, r]));
    expect(byName.BAR0).toEqual({ name: 'BAR0', offset: 0x10, bytes: Buffer.from('00000080', 'hex') });
    expect(byName['MSI data']).toEqual({ name: 'MSI data', offset: 0x4c, bytes: Buffer.from('2140', 'hex') });
    expect(byName.command).toEqual({ name: 'command', offset: 4, bytes: Buffer.from('0600', 'hex') });
    // Every register lies in config space aligned to its width: one config cycle each.
    for (const r of regs) expect(r.offset % r.bytes.length).toBe(0);
  });

  it('a 32-bit MSI with per-vector masking: data at +8, mask bits at +12', () => {
    const regs = configWriteBack(
      eduConfig((c) => c.writeUInt16LE(0x0101, 0x42)),
      'edu1',
    );
    const msi = regs.filter((r) => r.name.startsWith('MSI')).map((r) => [r.name, r.offset]);
    expect(msi).toEqual([
      ['MSI address', 0x44],
      ['MSI data', 0x48],
      ['MSI mask bits', 0x4c],
      ['MSI control', 0x42],
    ]);
  });

  it('refuses what it cannot write back faithfully: an unknown capability, a bridge, a short read', () => {
    expect(() =>
      configWriteBack(
        eduConfig((c) => (c[0x40] = 0x11)),
        'edu1',
      ),
    ).toThrow(/capability 0x11 at 0x40, which no write-back knows/);
    expect(() =>
      configWriteBack(
        eduConfig((c) => (c[0x0e] = 1)),
        'edu1',
      ),
    ).toThrow(/header is of type 1/);
    expect(() => configWriteBack(Buffer.alloc(64), 'edu1')).toThrow(/only 64 bytes/);
  });

  it('walks a capability list to its end, and stops on a loop', () => {
    expect(capabilities(eduConfig())).toEqual([{ id: 5, at: 0x40 }]);
    expect(capabilities(eduConfig((c) => c.writeUInt16LE(0, 0x06)))).toEqual([]);
    expect(capabilities(eduConfig((c) => (c[0x41] = 0x40)))).toHaveLength(48);
  });

  it('a read-back that differs names the register', () => {
    const saved = eduConfig();
    const regs = configWriteBack(saved, 'edu1');
    expect(configMismatches(regs, saved)).toEqual([]);
    const reset = eduConfig((c) => {
      c.writeUInt32LE(0, 0x10);
      c.writeUInt16LE(0, 0x04);
    });
    expect(configMismatches(regs, reset)).toEqual(['BAR0 (0x10): wrote 00000080, reads 00000000', 'command (0x4): wrote 0600, reads 0000']);
  });
});
