import type { Profile } from '../../qemu/profile.js';
import { TcelabError } from '../../util/errors.js';
import { requireKvmLabHost } from './kvm-lab-host.js';
import { AgentHost } from '../../host/agent-host.js';
import { adoptInnerVfioFds } from '../nested.js';
import { findGuestDevice } from '../guest-vfio.js';
import type { ScenarioDefinition } from '../scenario.js';

const MiB = 1024 * 1024;

/** The seeded fault that saves the host guest with kvm_hv loaded and restores it (qemu/modules-after-save.ts says why). */
const KVM_HV_BEFORE_SAVE = 'load-kvm-hv-before-save';

const seededIn = (options: Record<string, unknown>) => String(options.seedFaults ?? '').split(',');

/**
 * The production path of a POWER KVM lab host, driven from the inner guest: its VFIO container maps and unmaps the
 * passed-through device's TCEs through both kinds of window (the default 32-bit one and a DDW), so that the inner
 * guest's kernel issues H_PUT_TCE, H_PUT_TCE_INDIRECT and H_STUFF_TCE. The runner then judges from QEMU's trace
 * that the host kernel handled every one of them (kvm/in-kernel-tce.ts); this scenario makes sure there were some.
 */
export const kvmTcePath: ScenarioDefinition = {
  name: 'kvm-tce-path',
  description: 'map and unmap through the 32-bit window and a DDW in a KVM guest: the host kernel handles every TCE update',
  defaultProfile: 'kvm-lab-host',
  seedableFaults: {
    'userspace-tce': 'the inner machine runs under TCG instead of KVM: QEMU emulates its TCE tables and handles every update itself',
    'host-holder':
      "a process of the lab host takes duplicates of the inner QEMU's VFIO fds and outlives it (its pins stay), another locks 4 MiB",
    'host-warning': "a WARNING report is written to the lab host's kernel log (/dev/kmsg)",
    'assume-4k-host-pages':
      "the host's FOLL_PIN expectation counts 4 KiB pages whatever the lab host's kernel pins (on a 64 KiB-page lab host it must fail)",
    [KVM_HV_BEFORE_SAVE]:
      "the host guest's /init loads kvm_hv before its machine is saved, and the run restores the host guest from that save: " +
      'QEMU does not migrate the partition table kvm_hv registered, so the inner guest cannot start (KVM: unknown exit, hardware reason 3)',
  },
  adjustProfile(profile, options) {
    const { inner } = requireKvmLabHost('kvm-tce-path', profile, { innerBoots: true });
    const seeded = seededIn(options);
    let adjusted = profile;
    // tcelab.modules= on the command line: /init loads it at boot, so the saved machine holds it loaded.
    if (seeded.includes(KVM_HV_BEFORE_SAVE))
      adjusted = { ...adjusted, guest: { ...adjusted.guest, append: `${adjusted.guest.append} tcelab.modules=kvm_hv` } };
    if (!seeded.includes('userspace-tce')) return adjusted;
    const tcg: Profile['qemu'] = { ...inner.qemu, accel: 'tcg', cpu: 'power9' };
    return { ...adjusted, inner: { ...inner, qemu: tcg, guest: { ...inner.guest, bootTimeoutSec: 900 } } };
  },
  labHostRestored: (options) => (seededIn(options).includes(KVM_HV_BEFORE_SAVE) ? `the seeded fault ${KVM_HV_BEFORE_SAVE}` : undefined),
  async run(ctx) {
    const { agent, checks } = ctx;
    const dev = await findGuestDevice(agent, ctx.profile);
    const bound = await agent.bind(dev.address);
    checks.equal(`${dev.address} bound to vfio-pci`, bound.group, dev.iommuGroup);
    const worker = await agent.startWorker();
    await worker.open(bound.group);
    const region = await worker.alloc(4 * MiB);
    await worker.register(region.region);
    // One TCE (H_PUT_TCE), then 1 MiB of them at once (H_PUT_TCE_INDIRECT), then all cleared (H_STUFF_TCE).
    await checks.succeeds('map one 4 KiB page at IOVA 0 of the 32-bit window', worker.map(region.region, 0, { size: 4096 }));
    await checks.succeeds('map 1 MiB at IOVA 1 MiB of the 32-bit window', worker.map(region.region, MiB, { offset: MiB, size: MiB }));
    await checks.succeeds('unmap both', worker.unmap(0, 2 * MiB));
    // A DDW small enough for the host guest to give its device (4 KiB IOMMU pages: the host guest's RAM is 4 KiB pages).
    const window = await checks.succeeds('create a 4K-page 64-bit window of 8 MiB', worker.createWindow(12, 8 * MiB));
    if (window) {
      await checks.succeeds('map 2 MiB into it', worker.map(region.region, BigInt(window.startAddr), { size: 2 * MiB }));
      await checks.succeeds('unmap it', worker.unmap(BigInt(window.startAddr), 2 * MiB));
      await checks.succeeds('remove the window', worker.removeWindow(window.startAddr));
    }
    await worker.unregister(region.region);
    // Its exit releases the container (the 32-bit window's TCEs cleared through the host kernel): a latency, measured.
    const stopping = Date.now();
    await worker.stop('TERM');
    ctx.timings.push({ step: 'the worker exits after SIGTERM (its container released)', ms: Date.now() - stopping });
    await agent.unbind(dev.address);
    // Faults of the lab host (the host verdicts must fail): done through the agent of the host guest.
    if (ctx.seeded('host-holder') || ctx.seeded('host-warning')) {
      const host = ctx.lab.host;
      if (!(host instanceof AgentHost))
        throw new TcelabError(
          'seed a fault of the lab host',
          'the lab host is this machine',
          'these faults need a lab host that is a guest',
        );
      if (ctx.seeded('host-holder')) {
        await adoptInnerVfioFds(await host.agent.startWorker(), ctx.lab);
        await host.exec(['sh', '-c', 'tcelab-agent lock 4 600 </dev/null >/dev/null 2>&1 &']);
      }
      if (ctx.seeded('host-warning'))
        await host.exec(['sh', '-c', 'echo "<4>WARNING: CPU: 0 PID: 1 at tcelab/seeded.c:1 seeded_fault+0x0/0x10" > /dev/kmsg']);
    }
  },
};
