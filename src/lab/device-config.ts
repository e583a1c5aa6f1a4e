import type { AgentClient } from '../agent/agent-client.js';
import { guestPciDomain, type Profile } from '../qemu/profile.js';
import { configMismatches, configWriteBack, type SavedPciConfig, unmigratedDevice } from '../snapshot/pci-config.js';
import { TcelabError } from '../util/errors.js';
import type { Progress } from '../util/progress.js';

/** What a restored lab wrote back into one device: where, how many registers, how long it took. */
export interface RestoredConfig {
  id: string;
  address: string;
  registers: number;
  ms: number;
}

const SYS_PCI = '/sys/bus/pci/devices';

/**
 * The guest addresses of the profile's devices that QEMU does not migrate (pci-config.ts): on pseries the PHB of
 * index N is PCI domain N, and QEMU gives a PHB's devices its slots in the order of the command line, so the n-th
 * such device of a PHB is the n-th device of its vendor and device id in that domain.
 */
async function unmigratedInGuest(agent: AgentClient, profile: Profile): Promise<Array<{ id: string; driver: string; address: string }>> {
  const wanted = profile.devices.filter((d) => unmigratedDevice(d.driver));
  if (!wanted.length) return [];
  const present = (await agent.listDir(SYS_PCI)).map((e) => e.name).sort();
  const idOf = async (address: string) => {
    const read = async (f: string) => Number.parseInt((await agent.readFile(`${SYS_PCI}/${address}/${f}`)).content.trim(), 16);
    return { vendor: await read('vendor'), device: await read('device') };
  };
  const out: Array<{ id: string; driver: string; address: string }> = [];
  for (const phb of profile.phbs) {
    const here = wanted.filter((d) => d.phb === phb.id);
    if (!here.length) continue;
    const inDomain = present.filter((a) => a.startsWith(`${guestPciDomain(phb)}:`));
    const ids = await Promise.all(inDomain.map(idOf));
    for (const driver of new Set(here.map((d) => d.driver))) {
      const model = unmigratedDevice(driver)!;
      const found = inDomain.filter((_, i) => ids[i].vendor === model.vendor && ids[i].device === model.device);
      const ofDriver = here.filter((d) => d.driver === driver);
      if (found.length !== ofDriver.length)
        throw new TcelabError(
          `find the ${driver} devices of PHB ${phb.id} in the guest`,
          `the profile has ${ofDriver.length}, domain ${guestPciDomain(phb)} has ${found.length} (${found.join(', ') || 'none'})`,
          'check the guest console for PCI probe errors',
        );
      ofDriver.forEach((d, i) => {
        out.push({ id: d.id, driver, address: found[i] });
      });
    }
  }
  return out;
}

/**
 * Read at the save, stored in the snapshot's meta: the configuration space of each device QEMU does not migrate, as
 * the guest reads it (on pseries through RTAS: QEMU's own answer). A device whose configuration could not be written
 * back faithfully (configWriteBack refuses it) fails the save: its labs boot cold.
 */
export async function readUnmigratedConfigs(agent: AgentClient, profile: Profile): Promise<SavedPciConfig[]> {
  const out: SavedPciConfig[] = [];
  for (const d of await unmigratedInGuest(agent, profile)) {
    const config = await agent.pciConfigRead(d.address, 0, 256);
    configWriteBack(config, `${d.id} (${d.address})`);
    out.push({ ...d, config: config.toString('hex') });
  }
  return out;
}

/**
 * In a restored guest, before anything uses them: each saved device's configuration written back register by
 * register in configWriteBack's order (the BARs, the header, MSI, the command register last), each write a config
 * cycle into QEMU (/sys/…/config; on pseries RTAS ibm,write-pci-config), then read back and compared.
 */
export async function writeBackConfigs(agent: AgentClient, saved: SavedPciConfig[], progress: Progress): Promise<RestoredConfig[]> {
  const out: RestoredConfig[] = [];
  for (const d of saved) {
    const what = `${d.id} (${d.address})`;
    await progress.step(`write back the PCI configuration of ${what}: QEMU migrates none of it`, async () => {
      const t0 = Date.now();
      const registers = configWriteBack(Buffer.from(d.config, 'hex'), what);
      for (const r of registers) await agent.pciConfigWrite(d.address, r.offset, r.bytes);
      const wrong = configMismatches(registers, await agent.pciConfigRead(d.address, 0, 256));
      if (wrong.length)
        throw new TcelabError(
          `write back the PCI configuration of ${what}`,
          `the device reads back otherwise: ${wrong.join('; ')}`,
          'run with --cold; the snapshot is of another machine, or the device ignores config writes',
        );
      out.push({ id: d.id, address: d.address, registers: registers.length, ms: Date.now() - t0 });
    });
  }
  return out;
}
