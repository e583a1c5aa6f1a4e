import { join } from 'node:path';
import type { AgentClient } from '../../agent/agent-client.js';
import { AgentHost } from '../../host/agent-host.js';
import type { Host } from '../../host/host.js';
import { type GuestImage, INNER_BOOT_IMAGE } from '../../image/image-builder.js';
import { Lab, type LaunchOptions } from '../../lab/lab.js';
import type { Profile } from '../../qemu/profile.js';
import { TcelabError } from '../../util/errors.js';
import { parseKbFields } from '../../probes/proc.js';
import { kvmHvReady } from '../../doctor/doctor.js';
import type { Progress } from '../../util/progress.js';
import type { ScenarioDefinition } from '../scenario.js';

/**
 * A lab host that is itself a guest (the KVM lab host, emulated): the profile's outer machine is booted first and
 * becomes the host, through its agent; the lab under test is the profile's inner machine, which boots inside it.
 * Where the inner machine only needs to exist (the nested lab host, `guest.boot: false`), or the scenario launches
 * inner labs itself (`drivesInnerLabs`), the outer machine is the lab, as before.
 */
export function runsOnGuestHost(def: Pick<ScenarioDefinition, 'drivesInnerLabs'>, profile: Profile): boolean {
  return profile.inner?.guest.boot === true && !def.drivesInnerLabs;
}

/** The outer machine as a running host: its lab (the outer QEMU here), its agent, and the Host that reaches it. */
export interface GuestHost {
  lab: Lab;
  agent: AgentClient;
  host: AgentHost;
  kernelRelease: string;
  spawnToAgentMs: number;
}

/** What the inner lab boots: the base image the kvm-host image carries, at its paths in the host guest. */
export const innerBootImage = () => ({ ...INNER_BOOT_IMAGE });

/**
 * Boots the outer machine to its agent and checks it can host the inner lab (KVM where the inner lab asks for it).
 * On any failure the outer machine is torn down here, its artifacts kept.
 */
export async function bootGuestHost(
  profile: Profile,
  image: GuestImage,
  opts: Pick<LaunchOptions, 'runtimeRoot' | 'snapshots'> & { progress: Progress },
): Promise<GuestHost> {
  const { progress } = opts;
  const outer: Profile = { ...profile, inner: undefined };
  const lab = await Lab.launch(outer, { image, progress, runtimeRoot: opts.runtimeRoot, snapshots: opts.snapshots });
  try {
    const init = await lab.waitForGuestInit(progress);
    const agent = await lab.agent(progress);
    const host = new AgentHost(agent, `lab host (${profile.name}'s guest)`);
    if (profile.inner?.qemu.accel === 'kvm') await requireKvm(host, agent);
    return { lab, agent, host, kernelRelease: init.kernelRelease, spawnToAgentMs: Date.now() - lab.spawnedAt };
  } catch (err) {
    // Its runtime dir is kept as the artifacts of a failed lab.
    lab.failed = true;
    await lab.shutdown('quit', progress).catch(() => {});
    await lab.dispose({}).catch(() => {});
    throw err;
  }
}

/** /dev/kvm in the host guest, or why not (the module did not load, the parent gave no nested HV…), from its kernel log. */
async function requireKvm(host: AgentHost, agent: AgentClient): Promise<void> {
  if (await kvmHvReady(host)) return;
  const dmesg = await agent.exec(['dmesg'], 10_000).then(
    (r) => r.stdout,
    () => '',
  );
  const said = dmesg
    .split('\n')
    .filter((l) => /kvm/i.test(l))
    .slice(-4)
    .map((l) => l.trim())
    .join(' | ');
  throw new TcelabError(
    'KVM lab host',
    `no KVM-HV in the host guest (kvm_hv not loaded)${said ? `; its kernel said: ${said}` : ' (its kernel said nothing about kvm)'}`,
    'the profile needs guest.modules ["kvm_hv"], guest.image "kvm-host" and qemu.machine "cap-nested-hv": "on" ' +
      '(POWER9 under TCG, or a parent KVM with nested HV); `tcelab doctor --profile kvm-lab-host --inner` checks it',
  );
}

/** Enough free huge pages in a host guest for `mib` of guest RAM (its kernel's default size), or why not. */
export async function reserveHugepages(host: Host, mib: number): Promise<void> {
  const meminfo = async () => parseKbFields((await host.readFile('/proc/meminfo')) ?? '');
  const before = await meminfo();
  const sizeKb = before.get('Hugepagesize') ?? 0;
  if (!sizeKb)
    throw new TcelabError('reserve huge pages in the lab host', 'its kernel has no huge pages (no Hugepagesize in /proc/meminfo)');
  const need = Math.ceil((mib * 1024) / sizeKb);
  const free = before.get('HugePages_Free') ?? 0;
  if (free >= need) return;
  await host.writeFile('/proc/sys/vm/nr_hugepages', String((before.get('HugePages_Total') ?? 0) + need - free));
  const got = (await meminfo()).get('HugePages_Free') ?? 0;
  if (got < need) {
    throw new TcelabError(
      'reserve huge pages in the lab host',
      `${got} of the ${need} free ${sizeKb / 1024} MiB pages that ${mib} MiB of guest RAM needs`,
      "give the lab host's guest more memory (qemu.memoryMiB) or the inner machine less",
    );
  }
}

/** Quits the host guest once the lab under test is gone; its artifacts go beside the lab's. */
export async function disposeGuestHost(guestHost: GuestHost, failed: boolean, artifactsTo: string, progress: Progress): Promise<void> {
  const { lab } = guestHost;
  if (failed) lab.failed = true;
  if (lab.process.running) await lab.shutdown('quit', progress).catch(() => {});
  await lab.dispose({ artifactsTo });
}

/**
 * An inner machine launched in the guest that hosts it (`host`): the huge pages its RAM asks for reserved there first,
 * as a lab host's admin would, the base image the kvm-host guest carries if it boots, its runtime dir in the outer lab's.
 */
export async function launchInnerMachine(profile: Profile, host: Host, outerRuntimeDir: string, progress: Progress): Promise<Lab> {
  if (profile.qemu.hugepages)
    await progress.step('reserve huge pages in the lab host', () => reserveHugepages(host, profile.qemu.memoryMiB));
  return Lab.launch(profile, {
    host,
    image: profile.guest.boot ? innerBootImage() : undefined,
    runtimeRoot: join(outerRuntimeDir, 'inner-runtime'),
    progress,
  });
}

/** The inner lab, the lab under test, launched in the host guest. */
export function launchLabInGuestHost(profile: Profile, guestHost: GuestHost, progress: Progress): Promise<Lab> {
  return launchInnerMachine(profile.inner!, guestHost.host, guestHost.lab.paths.dir, progress);
}
