import type { ScenarioDefinition, ScenarioContext } from '../scenario.js';
import { findGuestDevice } from '../guest-vfio.js';
import { liobnOf, summarizeWindows, type DmaWindow } from '../../ddw/dma-window.js';
import { PeerCommandError } from '../../protocol/errors.js';

const GiB = 1n << 30n;

/** The host's windows of one PHB, described the way the guest would. */
async function hostWindows(ctx: ScenarioContext, phb: string): Promise<DmaWindow[]> {
  return (await ctx.ddw.windows()).filter((w) => w.phb === phb);
}

/**
 * Dynamic DMA windows created by the guest's VFIO container through QEMU's
 * RTAS DDW calls, checked from both sides: what the guest asked for and got
 * (TCE_CREATE's start address) against what QEMU has (QOM, memory tree, DDW trace).
 */
export const ddwWindows: ScenarioDefinition = {
  name: 'ddw-windows',
  description: 'create/map/remove 64-bit DMA windows in the guest; the host view matches at every step',
  defaultProfile: 'emulated',
  seedableFaults: {
    'window-4k-as-64k': 'the "64K-page" window is created with 4 KiB pages; the checks still expect 64 KiB',
    'remove-wrong-window': 'the 4K-page window is removed by a start address 1 GiB off, so it stays',
    'phb-without-ddw': "the device's PHB is started without DDW (ddw=off)",
    'map-beyond-window': 'memory is mapped 1 GiB past the start of each window, outside it',
    'window-before-look': 'a 64-bit window is created before the first look at the host view',
    'container-v1': 'the container is opened as VFIO_SPAPR_TCE_IOMMU (v1), which has no DDW',
    'unmap-elsewhere': "each window's mapping is unmapped 1 GiB past its start, outside the window, so it stays",
  },
  adjustProfile(profile, options) {
    if (
      !String(options.seedFaults ?? '')
        .split(',')
        .includes('phb-without-ddw')
    )
      return profile;
    const phb = profile.devices[0]!.phb;
    return { ...profile, phbs: profile.phbs.map((p) => (p.id === phb ? { ...p, ddw: false } : p)) };
  },
  async run(ctx) {
    const { agent, checks } = ctx;
    const dev = await findGuestDevice(agent, ctx.profile);
    const deviceSpec = ctx.profile.devices[0]!;
    const phb = ctx.profile.phbs.find((p) => p.id === deviceSpec.phb)!;
    const bound = await agent.bind(dev.address);
    const worker = await agent.startWorker();
    const opened = await worker.open(bound.group, ctx.seeded('container-v1') ? 'v1' : 'v2');
    const info = opened.info;
    const { pageSize } = await agent.info();
    checks.equal('container reports DDW support', info.ddwSupported, true);
    checks.atLeast('max dynamic windows', info.ddw.maxDynamicWindows, 1, `page sizes ${info.ddw.pageSizes}`);
    const phbState = await ctx.ddw.phbState(phb.id);
    checks.equal('host PHB has ddw=on', phbState.ddw, true);
    checks.equal('host and guest agree on the DDW page-size mask', BigInt(info.ddw.pageSizes), phbState.pageSizeMask);

    // The default 32-bit window, from both sides.
    const early = ctx.seeded('window-before-look') ? await worker.createWindow(16, GiB) : undefined;
    let host = await hostWindows(ctx, phb.id);
    if (early) await worker.removeWindow(early.startAddr);
    const dma32: DmaWindow = {
      phb: phb.id,
      liobn: liobnOf(phb.index, 0),
      start: BigInt(info.dma32WindowStart),
      size: BigInt(info.dma32WindowSize),
      pageShift: 12,
    };
    checks.equal('host view before: only the default 32-bit window', summarizeWindows(host), summarizeWindows([dma32]));

    for (const spec of [
      { pageShift: 16, size: GiB, hugetlb: true, label: '64K-page' },
      { pageShift: 12, size: GiB / 4n, hugetlb: false, label: '4K-page' },
    ]) {
      const asked = spec.pageShift === 16 && ctx.seeded('window-4k-as-64k') ? 12 : spec.pageShift;
      const created = await checks.succeeds(
        `create a ${spec.label} 64-bit window of ${spec.size / (1n << 20n)} MiB`,
        worker.createWindow(asked, spec.size),
        (w) => `start ${w.startAddr}`,
      );
      if (!created) continue;
      ctx.phase(`${spec.label} window live`);
      const want: DmaWindow = {
        phb: phb.id,
        liobn: liobnOf(phb.index, 1),
        start: BigInt(created.startAddr),
        size: spec.size,
        pageShift: spec.pageShift,
      };
      host = await hostWindows(ctx, phb.id);
      checks.equal(`host view shows exactly the ${spec.label} window`, summarizeWindows(host), summarizeWindows([dma32, want]));

      // Map memory whose page size fits the window; 4K pages into a 64K window must fail.
      const size = 2 * 1024 * 1024;
      const region = await worker.alloc(size, spec.hugetlb);
      await worker.register(region.region);
      const mapAt = ctx.seeded('map-beyond-window') ? want.start + GiB : want.start;
      await checks.succeeds(
        `map ${size >> 20} MiB of ${spec.hugetlb ? 'hugetlb' : '4K-page'} memory into the ${spec.label} window`,
        worker.map(region.region, mapAt, { size }),
      );
      if (spec.pageShift > 12 && pageSize >= 1 << spec.pageShift) {
        checks.notApplicable(
          'map ordinary 4K-page memory into the 64K-page window',
          `the kernel's base pages are ${pageSize / 1024} KiB: ordinary memory is backed by pages as large as the window's`,
        );
      } else if (spec.pageShift > 12) {
        const small = await worker.alloc(64 * 1024);
        await worker.register(small.region);
        await checks.failsWith(
          'map ordinary 4K-page memory into the 64K-page window',
          worker.map(small.region, want.start + BigInt(size), { size: 64 * 1024 }),
          'EINVAL',
        );
        await worker.unregister(small.region);
        await worker.free(small.region);
      }
      const unmapAt = ctx.seeded('unmap-elsewhere') ? want.start + GiB : want.start;
      await checks.succeeds(`unmap it from the ${spec.label} window`, worker.unmap(unmapAt, size));
      await worker.unregister(region.region);
      await worker.free(region.region);
      const removeAt =
        spec.pageShift === 12 && ctx.seeded('remove-wrong-window')
          ? `0x${(BigInt(created.startAddr) + GiB).toString(16)}`
          : created.startAddr;
      await checks.succeeds(`remove the ${spec.label} window`, worker.removeWindow(removeAt));
      host = await hostWindows(ctx, phb.id);
      checks.equal(
        `host view after removing the ${spec.label} window: only the default window`,
        summarizeWindows(host),
        summarizeWindows([dma32]),
      );
    }

    // More windows than the container supports: the excess one fails cleanly, with an errno.
    const created: string[] = [];
    let failure: string | undefined;
    for (let i = 0; i <= info.ddw.maxDynamicWindows; i++) {
      try {
        created.push((await worker.createWindow(16, GiB)).startAddr);
      } catch (err) {
        failure = err instanceof PeerCommandError ? err.errorClass : (err as Error).message;
        break;
      }
    }
    // The default 32-bit window holds one of the container's table slots.
    checks.equal(
      `windows beyond max_dynamic_windows_supported (${info.ddw.maxDynamicWindows}, the default one included) fail with ENOSPC`,
      `${created.length} created, then ${failure ?? 'no failure'}`,
      `${info.ddw.maxDynamicWindows - 1} created, then ENOSPC`,
    );
    host = await hostWindows(ctx, phb.id);
    checks.equal('host view holds the default window plus the ones created', host.length, 1 + created.length, summarizeWindows(host));
    for (const start of created) await worker.removeWindow(start);
    host = await hostWindows(ctx, phb.id);
    checks.equal('host view after removing them: only the default window', summarizeWindows(host), summarizeWindows([dma32]));
    await worker.stop('TERM');
    await agent.unbind(dev.address);
  },
};
