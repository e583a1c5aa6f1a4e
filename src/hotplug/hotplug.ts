import type { QmpClient } from '../qmp/qmp-client.js';
import type { AgentClient } from '../agent/agent-client.js';
import { TcelabError } from '../util/errors.js';
import { PollTimeoutError, pollUntil } from '../util/poll.js';
import { PeerCommandError } from '../protocol/errors.js';
import { DRC_TYPE_PCI, DRC_TYPE_PHB, drcName, findInQueryPci, pciDrcIndex, phbDeviceTreeNode, phbDrcIndex } from './drc.js';
import { deviceArg } from '../qemu/argv.js';
import { guestPciDomain } from '../qemu/profile.js';

/**
 * PHB and PCI hotplug on pseries, with the guest completing each step: QMP
 * device_add alone only raises an RTAS event that a Linux guest does not act
 * on; the guest's drmgr (powerpc-ibm-utils) must configure the connector.
 * Order matters: plug the empty PHB and configure it, then plug the device
 * and configure its slot. Removal is the reverse: the guest releases first,
 * then QMP device_del, then DEVICE_DELETED.
 */
export interface StepTiming {
  step: string;
  ms: number;
}

export class HotplugError extends TcelabError {
  constructor(
    readonly step: string,
    why: string,
    hint?: string,
  ) {
    super(`hotplug step "${step}"`, why, hint);
    this.name = 'HotplugError';
  }
}

export interface PluggedPhb {
  id: string;
  index: number;
  ddw: boolean;
  drc: string;
}

export interface PluggedDevice {
  id: string;
  phb: string;
  driver: string;
  drc: string;
  /** The guest's PCI address of the device, and its IOMMU group. */
  address: string;
  group: number;
}

export interface HotplugTimeouts {
  /** A guest-side step: drmgr adding a PHB or device, removing a device, a wait on sysfs. */
  guestMs: number;
  /** QEMU's DEVICE_DELETED after the guest released a device. */
  deletedMs: number;
  /**
   * drmgr removing a PHB: measured 20–56 s per removal (median 32 s, 48 removals) with one lab on the machine, and
   * growing with every round (defect 2: the stale rpaphp slots drmgr walks); twice that with a second lab on the
   * other core. A timeout near those numbers made a sound run fail, so this one is far above them.
   */
  phbRemoveMs: number;
}

export const defaultHotplugTimeouts: HotplugTimeouts = { guestMs: 60_000, deletedMs: 60_000, phbRemoveMs: 300_000 };

export class Hotplugger {
  readonly phbs = new Map<string, PluggedPhb>();
  readonly devices = new Map<string, PluggedDevice>();

  constructor(
    private readonly qmp: QmpClient,
    private readonly agent: AgentClient,
    private readonly timeouts: HotplugTimeouts = defaultHotplugTimeouts,
  ) {}

  private async timed<T>(timings: StepTiming[], step: string, fn: () => Promise<T>): Promise<T> {
    const t0 = Date.now();
    try {
      return await fn();
    } catch (err) {
      if (err instanceof HotplugError) throw err;
      throw new HotplugError(step, (err as Error).message);
    } finally {
      timings.push({ step, ms: Date.now() - t0 });
    }
  }

  private async drmgr(step: string, args: string[], timeoutMs = this.timeouts.guestMs): Promise<void> {
    const r = await this.agent.exec(['drmgr', ...args], timeoutMs);
    if (r.timedOut || r.exitCode !== 0) {
      throw new HotplugError(
        step,
        `drmgr ${args.join(' ')} ${r.timedOut ? 'timed out' : `exited with ${r.exitCode}`}: ${(r.stderr || r.stdout).trim().split('\n').slice(-3).join(' | ')}`,
        'the guest console and /var/log/drmgr in the guest say more',
      );
    }
  }

  private async waitUntil<T>(
    step: string,
    what: string,
    probe: () => Promise<T | undefined>,
    timeoutMs = this.timeouts.guestMs,
  ): Promise<T> {
    return pollUntil(what, probe, { timeoutMs, intervalMs: 100 }).catch((err: unknown) => {
      // The step that waited is what a hotplug failure names.
      if (err instanceof PollTimeoutError) throw new HotplugError(step, `${what} did not happen: ${err.why}`);
      throw err;
    });
  }

  private async guestHasPhb(index: number): Promise<boolean> {
    const entries = await this.agent.listDir('/proc/device-tree');
    return entries.some((e) => e.name === phbDeviceTreeNode(index));
  }

  /** QMP device_del and its DEVICE_DELETED, timed as two steps ("QMP device_del <what>", "DEVICE_DELETED <what>"). */
  private async removeFromQemu(timings: StepTiming[], what: string, id: string, timeoutMs = this.timeouts.deletedMs): Promise<void> {
    const t0 = Date.now();
    try {
      const took = await this.qmp.deviceDelAndWait(id, timeoutMs);
      timings.push({ step: `QMP device_del ${what}`, ms: took.requestMs }, { step: `DEVICE_DELETED ${what}`, ms: took.deletedMs });
    } catch (err) {
      timings.push({ step: `QMP device_del ${what}`, ms: Date.now() - t0 });
      if (err instanceof PeerCommandError) throw new HotplugError(`QMP device_del ${what}`, err.message);
      throw new HotplugError(
        `DEVICE_DELETED ${what}`,
        `no DEVICE_DELETED for ${id}: ${(err as Error).message}`,
        'the guest may not have released it; see the console log',
      );
    }
  }

  /** device_add spapr-pci-host-bridge, then drmgr -c phb -a, then wait for the guest's device-tree node. */
  async hotplugPhb(index: number, opts: { id?: string; ddw?: boolean } = {}): Promise<{ phb: PluggedPhb; timings: StepTiming[] }> {
    const id = opts.id ?? `hphb${index}`;
    const ddw = opts.ddw ?? true;
    const timings: StepTiming[] = [];
    if (this.phbs.has(id)) throw new HotplugError('plug PHB', `${id} is already plugged`);
    await this.timed(timings, 'QMP device_add PHB', () => this.qmp.deviceAdd('spapr-pci-host-bridge', id, { index, ddw }));
    try {
      const drcId = await this.timed(timings, 'derive PHB DRC', () =>
        this.qmp.qomGet<number>(`/machine/dr-connector[${phbDrcIndex(index)}]`, 'id'),
      );
      const drc = drcName(DRC_TYPE_PHB, drcId);
      await this.timed(timings, 'guest drmgr -c phb -a', () => this.drmgr('guest drmgr -c phb -a', ['-c', 'phb', '-a', '-s', drc]));
      await this.timed(timings, 'guest reports the PHB', () =>
        this.waitUntil('guest reports the PHB', `device-tree node ${phbDeviceTreeNode(index)}`, async () =>
          (await this.guestHasPhb(index)) ? true : undefined,
        ),
      );
      const phb = { id, index, ddw, drc };
      this.phbs.set(id, phb);
      return { phb, timings };
    } catch (err) {
      // Leave the lab as it was: the guest never configured the PHB, so QEMU can drop it at once.
      await this.qmp.deviceDelAndWait(id, 10_000).catch(() => {});
      throw err;
    }
  }

  /** device_add on a plugged PHB, then drmgr -c pci -a on its derived slot, then wait for it in a new IOMMU group. */
  async hotplugDevice(
    phbId: string,
    dev: { id: string; driver: string; host?: string; props?: Record<string, string> },
  ): Promise<{ device: PluggedDevice; timings: StepTiming[] }> {
    const timings: StepTiming[] = [];
    const phb = this.phbs.get(phbId);
    if (!phb) throw new HotplugError('plug device', `PHB ${phbId} was not hot-plugged by this controller`);
    const groupsBefore = new Set((await this.agent.info()).iommuGroups.filter((g) => g.devices.length > 0).map((g) => g.group));
    const arg = deviceArg({ id: dev.id, driver: dev.driver, phb: phbId, host: dev.host, props: dev.props ?? {} });
    const props: Record<string, unknown> = { bus: `${phbId}.0`, ...(dev.host ? { host: dev.host } : {}), ...(dev.props ?? {}) };
    await this.timed(timings, 'QMP device_add device', () => this.qmp.deviceAdd(dev.driver, dev.id, props));
    try {
      const drc = await this.timed(timings, 'derive slot DRC', async () => {
        const where = findInQueryPci(await this.qmp.queryPci(), dev.id);
        if (!where) throw new Error(`${dev.id} (${arg}) is not in query-pci`);
        const index = pciDrcIndex(phb.index, where.bus, where.slot, where.fn);
        const path = `/machine/peripheral/${phbId}/dr-connector[${index}]`;
        const linked = await this.qmp.qomGet<string>(path, 'device');
        if (linked !== `/machine/peripheral/${dev.id}`)
          throw new Error(`DRC ${index.toString(16)} links ${linked || 'nothing'}, not ${dev.id}`);
        return drcName(DRC_TYPE_PCI, await this.qmp.qomGet<number>(path, 'id'));
      });
      // -I: no identify prompt (drmgr otherwise waits for Enter on stdin).
      await this.timed(timings, 'guest drmgr -c pci -a', () => this.drmgr('guest drmgr -c pci -a', ['-c', 'pci', '-a', '-I', '-s', drc]));
      const domain = guestPciDomain(phb);
      const found = await this.timed(timings, 'device in a new IOMMU group', () =>
        this.waitUntil('device in a new IOMMU group', `a device in domain ${domain} with a new IOMMU group`, async () => {
          const info = await this.agent.info();
          const d = info.iommuGroups.flatMap((g) => g.devices).find((x) => x.address.startsWith(`${domain}:`) && x.iommuGroup !== null);
          return d && !groupsBefore.has(d.iommuGroup!) ? d : undefined;
        }),
      );
      const device = { id: dev.id, phb: phbId, driver: dev.driver, drc, address: found.address, group: found.iommuGroup! };
      this.devices.set(dev.id, device);
      return { device, timings };
    } catch (err) {
      await this.qmp.deviceDelAndWait(dev.id, 10_000).catch(() => {});
      throw err;
    }
  }

  /** drmgr -c pci -r in the guest, QMP device_del, DEVICE_DELETED. */
  async unplugDevice(id: string): Promise<StepTiming[]> {
    const timings: StepTiming[] = [];
    const dev = this.devices.get(id);
    if (!dev) throw new HotplugError('unplug device', `${id} was not hot-plugged by this controller`);
    await this.timed(timings, 'guest drmgr -c pci -r', () => this.drmgr('guest drmgr -c pci -r', ['-c', 'pci', '-r', '-I', '-s', dev.drc]));
    await this.removeFromQemu(timings, 'device', id);
    this.devices.delete(id);
    return timings;
  }

  /** drmgr -c phb -r in the guest, QMP device_del, DEVICE_DELETED. Its devices must be unplugged first. */
  async unplugPhb(id: string): Promise<StepTiming[]> {
    const timings: StepTiming[] = [];
    const phb = this.phbs.get(id);
    if (!phb) throw new HotplugError('unplug PHB', `${id} was not hot-plugged by this controller`);
    const onIt = [...this.devices.values()].filter((d) => d.phb === id).map((d) => d.id);
    if (onIt.length) throw new HotplugError('unplug PHB', `${id} still has ${onIt.join(', ')}; unplug them first`);
    await this.timed(timings, 'guest drmgr -c phb -r', () =>
      this.drmgr('guest drmgr -c phb -r', ['-c', 'phb', '-r', '-s', phb.drc], this.timeouts.phbRemoveMs),
    );
    await this.removeFromQemu(timings, 'PHB', id);
    await this.timed(timings, 'guest drops the PHB', () =>
      this.waitUntil('guest drops the PHB', `removal of ${phbDeviceTreeNode(phb.index)}`, async () =>
        (await this.guestHasPhb(phb.index)) ? undefined : true,
      ),
    );
    this.phbs.delete(id);
    return timings;
  }

  /** Unplugs everything this controller plugged, devices first; collects errors instead of stopping at the first. */
  async unplugAll(): Promise<string[]> {
    const errors: string[] = [];
    for (const id of [...this.devices.keys()].reverse()) await this.unplugDevice(id).catch((e) => errors.push((e as Error).message));
    for (const id of [...this.phbs.keys()].reverse()) await this.unplugPhb(id).catch((e) => errors.push((e as Error).message));
    return errors;
  }
}
