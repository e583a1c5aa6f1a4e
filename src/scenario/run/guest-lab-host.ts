import { join } from 'node:path';
import type { AgentClient } from '../../agent/agent-client.js';
import { kvmHvReady } from '../../doctor/doctor.js';
import { AgentHost } from '../../host/agent-host.js';
import { atRestAfterRcuBarriers } from '../guest-pins.js';
import type { Host } from '../../host/host.js';
import type { GuestImage } from '../../image/image-cache.js';
import { INNER_BOOT_IMAGE } from '../../image/image-variant.js';
import { kernelPageKb, parseKbFields, ProcCountersProbe } from '../../probes/proc.js';
import type { Sample } from '../../probes/sampler.js';
import type { GuestInitInfo } from '../../lab/guest-init.js';
import { Lab } from '../../lab/lab.js';
import { type Profile, runsUnderKvm } from '../../qemu/profile.js';
import { TcelabError } from '../../util/errors.js';
import type { Progress } from '../../util/progress.js';
import { describeHolders } from '../guest-balance.js';
import type { ScenarioDefinition, ScenarioReport } from '../scenario.js';
import type { HostKernelLog, LabHost, LabHostOptions, Leftovers } from './lab-host.js';
import { dedicatedHostJudgements, type HostJudgements } from './release-judgements.js';

/**
 * A lab host that is itself a guest (the KVM lab host, emulated): the profile's outer machine is booted first and
 * becomes the host, through its agent; the lab under test is the profile's inner machine, which boots inside it.
 * Where the inner machine only needs to exist (the nested lab host, `guest.boot: false`), or the scenario launches
 * inner labs itself (`drivesInnerLabs`), the outer machine is the lab, as before.
 */
export function runsOnGuestHost(def: Pick<ScenarioDefinition, 'drivesInnerLabs'>, profile: Profile): boolean {
  return profile.inner?.guest.boot === true && !def.drivesInnerLabs;
}

/** What the inner lab boots: the base image the kvm-host image carries, at its paths in the host guest. */
export const innerBootImage = () => ({ ...INNER_BOOT_IMAGE });

/**
 * The outer machine as the lab host: booted to its agent, reached through it (an AgentHost), and able to host the inner
 * lab (KVM where the inner lab asks for it). It runs nothing but the lab: its system-wide counters are the lab's part,
 * and whatever still holds a VFIO fd or locked memory there after QEMU exits is the lab's.
 */
export class GuestLabHost implements LabHost {
  readonly probe: ProcCountersProbe;
  readonly described: NonNullable<ScenarioReport['labHost']>;

  private constructor(
    private readonly lab: Lab,
    private readonly agent: AgentClient,
    private readonly host: AgentHost,
    profile: Profile,
    kernelRelease: string,
  ) {
    // No neighbours to attribute: the host guest runs nothing but this lab.
    this.probe = new ProcCountersProbe(host);
    this.described = {
      profile: profile.name,
      kernel: kernelRelease,
      qemuVersion: lab.qmp.qemuVersion,
      spawnToAgentMs: Date.now() - lab.spawnedAt,
      labStart: lab.start,
    };
  }

  /** Boots the outer machine; on any failure it is torn down here, its artifacts kept. */
  static async boot(profile: Profile, image: GuestImage, opts: LabHostOptions): Promise<GuestLabHost> {
    const { progress } = opts;
    opts.phase('lab host launch');
    const outer: Profile = { ...profile, inner: undefined };
    let up = await bootToAgent(outer, image, opts);
    if (opts.hostRestored && up.lab.start.how !== 'restored') up = await relaunchRestored(up, outer, image, opts);
    const { lab, init, agent } = up;
    try {
      const host = new AgentHost(agent, `lab host (${profile.name}'s guest)`);
      if (profile.inner && runsUnderKvm(profile.inner)) await requireKvm(host, agent);
      const guestHost = new GuestLabHost(lab, agent, host, profile, init.kernelRelease);
      opts.observeLab(lab, 'lab host');
      opts.phase('lab host up');
      return guestHost;
    } catch (err) {
      // Its runtime dir is kept as the artifacts of a failed lab.
      await lab.close({ failed: true, progress }).catch(() => {});
      throw err;
    }
  }

  mlockedByCgroup(): boolean {
    return false;
  }

  neighbourPins(): Record<number, number> {
    return {};
  }

  /** The inner lab, the lab under test, launched in the host guest. */
  launch(profile: Profile, { progress }: { progress: Progress }): Promise<Lab> {
    return launchInnerMachine(profile.inner!, this.host, this.lab.paths.dir, progress);
  }

  /** Its kernel's base page size (4 or 64 KiB: Debian ships both), from its agent's own mappings. */
  async pageKb(): Promise<number> {
    return kernelPageKb(this.host);
  }

  judgements(_lab: Lab, _baseline: Sample, _pins: Record<number, number>, mlockedToleranceKb: number): HostJudgements {
    return dedicatedHostJudgements(mlockedToleranceKb);
  }

  /** Its kernel puts VFIO pins by RCU callback: two quiet reads after its RCU barriers, or never (no barrier there). */
  atRest(): Promise<unknown> {
    return atRestAfterRcuBarriers(this.agent);
  }

  /** Its agent holds no VFIO fd and no locked memory: any process that does after QEMU exits is the lab's. */
  async leftovers(lab: Lab): Promise<Leftovers> {
    return this.agent.pinHolders().then(
      (all) => {
        const left = all.filter((h) => h.pid !== lab.process.pid);
        return {
          count: left.length,
          described: describeHolders(left),
          why: 'processes of the lab host still hold a VFIO fd or locked memory after QEMU exited',
        };
      },
      (err: Error) => ({ unknown: `the lab host's agent did not answer: ${err.message}` }),
    );
  }

  /** KVM-HV, the kvm-vfio device and the in-kernel TCE code run in its kernel: read through its agent and its console. */
  async kernelLog(): Promise<HostKernelLog> {
    const dmesg = this.lab.process.running
      ? await this.agent.exec(['dmesg'], 10_000).then(
          (r) => r.stdout,
          () => '',
        )
      : '';
    return {
      text: `${this.lab.process.console.tail(100_000)}\n${dmesg}`,
      source: `the lab host is a guest (${this.described.kernel}): ${dmesg ? 'its console and dmesg' : 'its console only (dmesg was not read)'}`,
    };
  }

  /** Quits the host guest once the lab under test is gone; its artifacts go beside the lab's. */
  async dispose(failed: boolean, artifactsTo: string, progress: Progress): Promise<void> {
    await this.lab.close({ failed, artifactsTo, progress });
  }
}

interface HostGuestUp {
  lab: Lab;
  init: GuestInitInfo;
  agent: AgentClient;
}

/** The outer machine launched (cold or restored) and up to its agent; torn down here, artifacts kept, if it is not. */
async function bootToAgent(outer: Profile, image: GuestImage, opts: LabHostOptions): Promise<HostGuestUp> {
  const { progress } = opts;
  const lab = await Lab.launch(outer, { image, progress, runtimeRoot: opts.runtimeRoot, snapshots: opts.snapshots });
  try {
    const init = await lab.waitForGuestInit(progress);
    return { lab, init, agent: await lab.agent(progress) };
  } catch (err) {
    await lab.close({ failed: true, progress }).catch(() => {});
    throw err;
  }
}

/**
 * A host guest that had to be restored (`hostRestored`) but booted cold: it saved its machine on the way up, so it is
 * closed and launched again from that save. One that could not save (`--cold`, a profile that cannot restore) is why.
 */
async function relaunchRestored(cold: HostGuestUp, outer: Profile, image: GuestImage, opts: LabHostOptions): Promise<HostGuestUp> {
  const { progress } = opts;
  const refuse = async (why: string): Promise<never> => {
    await cold.lab.close({ failed: true, progress }).catch(() => {});
    throw new TcelabError('restore the lab host', `${opts.hostRestored} needs a restored lab host: ${why}`);
  };
  if (!cold.lab.start.saved) return refuse(`it booted cold and saved no machine (${cold.lab.start.why ?? 'no reason given'})`);
  await cold.lab.close({ progress });
  const again = await bootToAgent(outer, image, opts);
  if (again.lab.start.how === 'restored') return again;
  return refuse(`launched again after its save, it booted cold (${again.lab.start.why ?? 'no reason given'})`);
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
