import type { AgentClient } from '../agent/agent-client.js';
import { guestPciDomain, type Profile } from '../qemu/profile.js';
import type { PciDeviceInfo } from '../agent/types.js';
import { TcelabError } from '../util/errors.js';

/**
 * The guest's view of a profile device: on pseries, Linux numbers PCI domains
 * by PHB in discovery order, and the PHB with `index` N appears as domain N.
 */
export async function findGuestDevice(agent: AgentClient, profile: Profile, deviceId?: string): Promise<PciDeviceInfo> {
  const dev = deviceId ? profile.devices.find((d) => d.id === deviceId) : profile.devices[0];
  if (!dev) throw new TcelabError('find the VFIO device', `profile ${profile.name} has no device${deviceId ? ` ${deviceId}` : 's'}`);
  const phb = profile.phbs.find((p) => p.id === dev.phb)!;
  const domain = guestPciDomain(phb);
  const info = await agent.info();
  const all = info.iommuGroups.flatMap((g) => g.devices);
  const hit = all.find((d) => d.address.startsWith(`${domain}:`));
  if (!hit) {
    throw new TcelabError(
      `find device ${dev.id} in the guest`,
      `no PCI device in domain ${domain} (PHB ${phb.id}); the guest has ${all.map((d) => d.address).join(', ') || 'none'}`,
      'check the guest console for PCI probe errors',
    );
  }
  return hit;
}
