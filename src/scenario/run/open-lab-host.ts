import type { GuestImage } from '../../image/image-cache.js';
import type { Profile } from '../../qemu/profile.js';
import type { ScenarioDefinition } from '../scenario.js';
import { GuestLabHost, runsOnGuestHost } from './guest-lab-host.js';
import type { LabHost, LabHostOptions } from './lab-host.js';
import { MachineLabHost } from './machine-lab-host.js';

/**
 * The lab under test of a profile: its inner machine where a guest hosts it (the KVM lab host), else the profile
 * itself. Verdicts about the lab's own machine (QEMU's TCE path) are judged on this one.
 */
export function labUnderTest(def: Pick<ScenarioDefinition, 'drivesInnerLabs'>, profile: Profile): Profile {
  return runsOnGuestHost(def, profile) ? profile.inner! : profile;
}

/** The lab host a run of `def` on `profile` needs, up and ready to launch the lab (a guest that hosts it boots here). */
export async function openLabHost(
  def: Pick<ScenarioDefinition, 'drivesInnerLabs'>,
  profile: Profile,
  image: GuestImage,
  opts: LabHostOptions,
): Promise<LabHost> {
  return runsOnGuestHost(def, profile) ? GuestLabHost.boot(profile, image, opts) : new MachineLabHost(profile, image, opts);
}
