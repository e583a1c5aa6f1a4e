import { basename } from 'node:path';
import type { Host } from './host.js';
import { TcelabError } from '../util/errors.js';

/**
 * Binds a PCI device to vfio-pci (driver_override + unbind + drivers_probe)
 * and gives it back to its original driver afterwards, on any Host. A lab-host
 * run binds before launch and restores in teardown, failure and interrupt included.
 */
export interface DeviceBinding {
  device: string;
  previousDriver: string | null;
  group: number;
}

export const BDF = /^[0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]$/;

export class VfioPciBinder {
  constructor(readonly host: Host) {}

  async driverOf(bdf: string): Promise<string | null> {
    const link = await this.host.readLink(`/sys/bus/pci/devices/${bdf}/driver`);
    return link ? basename(link) : null;
  }

  async groupOf(bdf: string): Promise<number | null> {
    const link = await this.host.readLink(`/sys/bus/pci/devices/${bdf}/iommu_group`);
    return link ? Number(basename(link)) : null;
  }

  async bind(bdf: string): Promise<DeviceBinding> {
    if (!BDF.test(bdf)) throw new TcelabError(`bind ${bdf} to vfio-pci`, 'not a PCI address (domain:bus:slot.function)');
    const dev = `/sys/bus/pci/devices/${bdf}`;
    if ((await this.host.listDir(dev)) === undefined)
      throw new TcelabError(`bind ${bdf} to vfio-pci`, `no such device on ${this.host.name}`, 'check the address with lspci -D');
    const previousDriver = await this.driverOf(bdf);
    if (previousDriver !== 'vfio-pci') {
      await this.host.writeFile(`${dev}/driver_override`, 'vfio-pci');
      if (previousDriver) await this.host.writeFile(`${dev}/driver/unbind`, bdf);
      await this.host.writeFile('/sys/bus/pci/drivers_probe', bdf);
    }
    const now = await this.driverOf(bdf);
    if (now !== 'vfio-pci') {
      throw new TcelabError(
        `bind ${bdf} to vfio-pci`,
        `it is bound to ${now ?? 'nothing'} after probing`,
        'load the vfio-pci module (modprobe vfio-pci) and try again',
      );
    }
    const group = await this.groupOf(bdf);
    if (group === null) throw new TcelabError(`bind ${bdf} to vfio-pci`, 'it has no IOMMU group', 'enable the IOMMU on this host');
    return { device: bdf, previousDriver: previousDriver === 'vfio-pci' ? null : previousDriver, group };
  }

  /** Undoes bind(): unbinds from vfio-pci, clears the override, re-probes the original driver. */
  async restore(b: Pick<DeviceBinding, 'device' | 'previousDriver'>): Promise<string | null> {
    const dev = `/sys/bus/pci/devices/${b.device}`;
    if ((await this.driverOf(b.device)) === 'vfio-pci') await this.host.writeFile(`${dev}/driver/unbind`, b.device);
    await this.host.writeFile(`${dev}/driver_override`, '\n');
    if (b.previousDriver) {
      await this.host
        .writeFile(`/sys/bus/pci/drivers/${b.previousDriver}/bind`, b.device)
        .catch(() => this.host.writeFile('/sys/bus/pci/drivers_probe', b.device));
    }
    return this.driverOf(b.device);
  }
}
