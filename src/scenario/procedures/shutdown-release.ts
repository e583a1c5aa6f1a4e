import type { ScenarioDefinition } from '../scenario.js';
import { findGuestDevice } from '../guest-vfio.js';
import { guestSampleNow } from '../guest-release.js';

const METHODS = ['powerdown', 'agent', 'quit'] as const;

/**
 * A guest with registered memory and a live 64-bit window goes away (agent
 * poweroff, QMP system_powerdown, or QMP quit); the host's counters must
 * return to the pre-launch baseline. Under TCG the host pins nothing unless
 * QEMU locks guest RAM, so the emulated lab runs with mem-lock=on: then the
 * host's VmLck/Mlocked carry the guest RAM and must come back.
 */
export const shutdownRelease: ScenarioDefinition = {
  name: 'shutdown-release',
  description: 'register + window in the guest, shut down (--set via=powerdown|agent|quit), host counters back to baseline',
  defaultProfile: 'emulated',
  keepsGuestPins: 'the guest goes away with a registration and a live window: that is what the host must survive',
  optionSpecs: { via: { type: 'string', enum: ['powerdown', 'agent', 'quit'] }, sizeMiB: { type: 'integer', min: 1, max: 4096 } },
  seedableFaults: {
    'register-extra-mib': 'registers 1 MiB more than the pins check expects',
    'no-window': 'creates no 64-bit window before the guest goes',
  },
  adjustProfile(profile) {
    const usesVfio = profile.devices.some((d) => d.driver === 'vfio-pci');
    return usesVfio ? profile : { ...profile, qemu: { ...profile.qemu, memLock: true } };
  },
  async run(ctx) {
    const { agent, checks } = ctx;
    const via = String(ctx.options.via ?? 'powerdown');
    if (!(METHODS as readonly string[]).includes(via)) throw new Error(`option via must be one of ${METHODS.join(', ')}, not ${via}`);
    const mib = Number(ctx.options.sizeMiB ?? 64);
    const dev = await findGuestDevice(agent, ctx.profile);
    const { group } = await agent.bind(dev.address);
    const pages = (mib * 1024 * 1024) / (await agent.info()).pageSize;
    const base = await guestSampleNow(ctx);
    const w = await agent.startWorker();
    await w.open(group);
    ctx.watchGuestPid(w.pid);
    const r = await w.alloc((mib + (ctx.seeded('register-extra-mib') ? 1 : 0)) * 1024 * 1024);
    await w.register(r.region);
    ctx.phase('registered');
    const win = ctx.seeded('no-window') ? { startAddr: '0x800000000000000' } : await w.createWindow(16, 1n << 30n);
    ctx.phase('window live');
    const live = await guestSampleNow(ctx);
    checks.equal('guest: pins held while running = registered pages', live.counters.pinnedPages - base.counters.pinnedPages, pages);
    const host = (await ctx.ddw.windows()).find((x) => x.start === BigInt(win.startAddr));
    checks.equal('host: the 64-bit window is live in QEMU', host ? `${host.start}` : 'absent', `${BigInt(win.startAddr)}`);
    const sd = await ctx.shutdown(via as (typeof METHODS)[number]);
    checks.equal(`guest went away via ${via} without escalation`, sd.escalations, []);
    const reason = via === 'quit' ? 'host-qmp-quit' : 'guest-shutdown';
    checks.equal(
      'QEMU reported the SHUTDOWN event with the expected reason',
      (sd.shutdownEvent as { reason?: string } | undefined)?.reason ?? 'none',
      reason,
    );
  },
};
