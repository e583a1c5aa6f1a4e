import type { AgentClient } from '../agent/agent-client.js';
import { modulesAfterSave } from '../qemu/modules-after-save.js';
import type { Profile } from '../qemu/profile.js';
import type { Progress } from '../util/progress.js';

/** modprobe can take seconds under TCG (kvm_hv: kvm.ko first); a module that hangs its init is not waited for forever. */
const MODPROBE_TIMEOUT_MS = 120_000;

/**
 * Loads the profile's modules that /init leaves out (qemu/modules-after-save.ts) through the agent: the guest is up,
 * saved already if it saves, restored already if it was. A module that does not load is said, not thrown, as /init
 * says it: what needs it (the KVM lab host's check for KVM-HV) reports why with the guest kernel's words.
 */
export async function loadModulesAfterSave(agent: AgentClient, profile: Pick<Profile, 'guest'>, progress: Progress): Promise<void> {
  for (const m of modulesAfterSave(profile)) {
    await progress.step(`load ${m} in the guest (after any save: a snapshot must not hold it loaded)`, async () => {
      const r = await agent.exec(['modprobe', m], MODPROBE_TIMEOUT_MS);
      if (r.exitCode !== 0 || r.timedOut)
        progress.info(`modprobe ${m} failed in the guest (${r.timedOut ? 'timed out' : `exit ${r.exitCode}`}): ${r.stderr.trim()}`);
    });
  }
}
