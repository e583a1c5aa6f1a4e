import { TcelabError } from '../util/errors.js';

/**
 * Devices whose state QEMU does not migrate, and what a snapshot carries for them instead: their PCI configuration
 * space as the guest saw it at the save, written back in the restored guest before anything uses the device — what
 * migration would have carried of it. One entry per device model; vendor and device id find it in the guest.
 */
export const UNMIGRATED_DEVICES: ReadonlyArray<{ driver: string; vendor: number; device: number; why: string }> = [
  {
    // Measured with QEMU 10.0.13 (TCG): restored without its configuration, the guest's first access to its BAR
    // machine-checks the guest (docs/verdicts.md, "QEMU findings").
    driver: 'edu',
    vendor: 0x1234,
    device: 0x11e8,
    why: 'hw/misc/edu.c registers no migration state (no vmsd): a restored edu has a reset configuration space',
  },
];

/** The entry of a profile device's driver, if QEMU migrates none of its state. */
export const unmigratedDevice = (driver: string) => UNMIGRATED_DEVICES.find((d) => d.driver === driver);

/** What a snapshot keeps of one such device: where the guest has it and its configuration space then (hex). */
export interface SavedPciConfig {
  /** The profile's device id. */
  id: string;
  driver: string;
  /** The guest's PCI address (domain:bus:slot.function). */
  address: string;
  /** The first 256 bytes of its configuration space at the save, as the guest read them (hex). */
  config: string;
}

/** One register to write back: its name, offset and the bytes it held (1, 2 or 4, aligned to their width). */
export interface ConfigRegister {
  name: string;
  offset: number;
  bytes: Buffer;
}

const COMMAND = 0x04;
const HEADER_TYPE = 0x0e;
const STATUS = 0x06;
const STATUS_CAP_LIST = 0x10;
const CAPABILITY_LIST = 0x34;
/** The capability ids a write-back knows (PCI Local Bus 3.0, appendix H). */
const CAP_MSI = 0x05;

const reg = (config: Buffer, name: string, offset: number, width: 1 | 2 | 4): ConfigRegister => ({
  name,
  offset,
  bytes: Buffer.from(config.subarray(offset, offset + width)),
});

/** A type 0 header's registers the guest (or its firmware) sets, but the command register: it goes last. */
const HEADER_REGISTERS: Array<[string, number, 1 | 2 | 4]> = [
  ...[0, 1, 2, 3, 4, 5].map((n): [string, number, 4] => [`BAR${n}`, 0x10 + 4 * n, 4]),
  ['expansion ROM', 0x30, 4],
  ['cache line size', 0x0c, 1],
  ['latency timer', 0x0d, 1],
  ['interrupt line', 0x3c, 1],
];

/**
 * The capabilities a write-back knows, by id: their writable registers, the one that enables them last. A device
 * with another capability is refused (its snapshot is not saved, its labs boot cold) rather than restored half.
 */
const CAPABILITIES: Record<number, { name: string; registers(config: Buffer, at: number): ConfigRegister[] }> = {
  [CAP_MSI]: {
    name: 'MSI',
    registers(config, at) {
      const control = config.readUInt16LE(at + 2);
      const is64 = (control & 0x80) !== 0;
      const perVectorMask = (control & 0x100) !== 0;
      const data = at + (is64 ? 12 : 8);
      return [
        reg(config, 'MSI address', at + 4, 4),
        ...(is64 ? [reg(config, 'MSI upper address', at + 8, 4)] : []),
        reg(config, 'MSI data', data, 2),
        ...(perVectorMask ? [reg(config, 'MSI mask bits', data + 4, 4)] : []),
        // Enable and the vectors granted last: the message it sends is in place by then.
        reg(config, 'MSI control', at + 2, 2),
      ];
    },
  },
};

/** The capability list of a saved configuration: id and offset of each, in list order. */
export function capabilities(config: Buffer): Array<{ id: number; at: number }> {
  if (!(config.readUInt16LE(STATUS) & STATUS_CAP_LIST)) return [];
  const out: Array<{ id: number; at: number }> = [];
  // At most 48 capabilities fit in 192 bytes: a longer walk is a loop in a broken list.
  for (let at = config[CAPABILITY_LIST] & 0xfc; at >= 0x40 && out.length < 48; at = config[at + 1] & 0xfc) out.push({ id: config[at], at });
  return out;
}

/**
 * The registers to write back into a restored device, in order: the BARs first (memory decode is off then, a
 * reset device's command register is 0), the rest of the header, each known capability (MSI: its message, then its
 * control), the command register last, which turns decode and bus mastering back on as they were.
 */
export function configWriteBack(config: Buffer, device: string): ConfigRegister[] {
  if (config.length < 256) throw new TcelabError(`the configuration of ${device}`, `only ${config.length} bytes were read (256 expected)`);
  const type = config[HEADER_TYPE] & 0x7f;
  if (type !== 0)
    throw new TcelabError(`the configuration of ${device}`, `its header is of type ${type}: only a type 0 (an endpoint's) is written back`);
  const caps = capabilities(config).map(({ id, at }) => {
    const known = CAPABILITIES[id];
    if (!known)
      throw new TcelabError(
        `the configuration of ${device}`,
        `it has capability 0x${id.toString(16).padStart(2, '0')} at 0x${at.toString(16)}, which no write-back knows`,
        'add it to CAPABILITIES (src/snapshot/pci-config.ts), or the device boots cold',
      );
    return known.registers(config, at);
  });
  return [
    ...HEADER_REGISTERS.map(([name, offset, width]) => reg(config, name, offset, width)),
    ...caps.flat(),
    reg(config, 'command', COMMAND, 2),
  ];
}

/** The registers a read-back of the device differs from what was written: name, written and read (hex). */
export function configMismatches(written: ConfigRegister[], readBack: Buffer): string[] {
  const reads = (r: ConfigRegister) => readBack.subarray(r.offset, r.offset + r.bytes.length);
  return written
    .filter((r) => !reads(r).equals(r.bytes))
    .map((r) => `${r.name} (0x${r.offset.toString(16)}): wrote ${r.bytes.toString('hex')}, reads ${reads(r).toString('hex')}`);
}
