import { KmsgCursor } from '../../host/kmsg.js';
import { LocalHost } from '../../host/local-host.js';
import type { GuestImage } from '../../image/image-cache.js';
import { describeProcessMemory, hostPageKb, LAB_MARKER_ENV } from '../../probes/host-attribution.js';
import { labCgroupExpected } from '../../probes/lab-cgroup.js';
import { ProcCountersProbe } from '../../probes/proc.js';
import type { Sample } from '../../probes/sampler.js';
import type { Progress } from '../../util/progress.js';
import { Lab, type LabStartOptions } from '../../lab/lab.js';
import { type Profile, runsUnderKvm } from '../../qemu/profile.js';
import type { HostKernelLog, LabHost, LabHostOptions, Leftovers } from './lab-host.js';
import { attributedHostJudgements, type HostJudgements } from './release-judgements.js';

/**
 * Whether a lab exercises this machine's kernel: under KVM its hypercalls (the TCE updates among them) are handled
 * here, and a device passed through is this kernel's VFIO. A TCG lab of emulated devices (the emulated lab) runs
 * nothing of this kernel but a process.
 */
export function exercisesHostKernel(profile: Profile): string | undefined {
  if (runsUnderKvm(profile)) return 'QEMU runs the lab under KVM in this kernel';
  if (profile.devices.some((d) => d.driver === 'vfio-pci')) return "the lab's device is passed through by this kernel's VFIO";
  return undefined;
}

/**
 * This machine as the lab host, or a real POWER host running tcelab (`lab-host-vfio`): it runs other things beside the
 * lab, so the lab's part of each counter is told from its neighbours' (host-attribution.ts, the lab's own cgroup).
 */
export class MachineLabHost implements LabHost {
  readonly probe: ProcCountersProbe;
  /** The kernel log from the run's start and why this kernel is under test, or why it is not judged. */
  private readonly kmsg: { cursor: KmsgCursor; why: string } | { notJudged: string };

  constructor(
    profile: Profile,
    private readonly image: GuestImage,
    private readonly opts: LabHostOptions,
  ) {
    this.probe = new ProcCountersProbe(new LocalHost(), opts.scanner, opts.labCgroup);
    const why = exercisesHostKernel(profile);
    const cursor = why ? KmsgCursor.open() : undefined;
    this.kmsg = !why
      ? {
          notJudged:
            "not judged: this machine's kernel is not under test here — the lab runs under TCG with emulated devices, so " +
            'no KVM and no VFIO of this kernel is exercised (a lab under KVM or with a device passed through reads it)',
        }
      : cursor instanceof KmsgCursor
        ? { cursor, why }
        : {
            notJudged:
              `not judged: ${cursor!.refused}; reading this host's kernel log needs root, CAP_SYSLOG or kernel.dmesg_restrict=0 — ` +
              'run tcelab with that right to have the host kernel judged',
          };
  }

  mlockedByCgroup(): boolean {
    return labCgroupExpected();
  }

  neighbourPins(): Record<number, number> {
    return this.opts.scanner.scan(250).neighbourPins;
  }

  launch(profile: Profile, { progress, ...start }: { progress: Progress } & LabStartOptions): Promise<Lab> {
    const { runtimeRoot, snapshots } = this.opts;
    return Lab.launch(profile, { image: this.image, progress, runtimeRoot, snapshots, ...start });
  }

  async pageKb(): Promise<number> {
    return hostPageKb();
  }

  judgements(lab: Lab, baseline: Sample, baselineNeighbourPins: Record<number, number>, mlockedToleranceKb: number): HostJudgements {
    return attributedHostJudgements(lab, baseline, baselineNeighbourPins, this.opts.scanner, mlockedToleranceKb);
  }

  /** Whatever the lab started must be gone with QEMU: a helper that lives on keeps its locked and pinned memory. */
  async leftovers(lab: Lab): Promise<Leftovers> {
    const left = this.opts.scanner.scan().lab.filter((p) => p.pid !== lab.process.pid);
    return {
      count: left.length,
      described: left.map(describeProcessMemory).join('; '),
      why: `processes carrying ${lab.name}'s marker (${LAB_MARKER_ENV}) are still alive after QEMU exited`,
    };
  }

  async kernelLog(): Promise<HostKernelLog> {
    const k = this.kmsg;
    if ('notJudged' in k) return k;
    return { text: k.cursor.linesSince().join('\n'), source: `this host's kernel log (/dev/kmsg) since the run began (${k.why})` };
  }

  async dispose(): Promise<void> {}
}
