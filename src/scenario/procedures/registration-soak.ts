import { closeSync, openSync, readdirSync } from 'node:fs';
import { atRestAfterRcuBarriers, settledAfterRcuBarriers } from '../guest-pins.js';
import type { ScenarioDefinition } from '../scenario.js';
import { findGuestDevice } from '../guest-vfio.js';
import { guestSampleNow } from '../guest-release.js';
import { slope } from '../slope.js';
import { Lab } from '../../lab/lab.js';

/**
 * A registration loop: register, map, unmap, unregister, N times (CI runs a
 * reduced count; --set cycles=1000 for the full soak). Whatever leaks grows
 * with the cycle count: pins, locked memory, file descriptors, DMA windows,
 * or the controller's own memory. Reports the slopes per 100 cycles.
 */
export const registrationSoak: ScenarioDefinition = {
  name: 'registration-soak',
  description: 'register/map/unmap/unregister loop; slopes of pins, VmLck, fds, windows, controller memory per 100 cycles',
  defaultProfile: 'emulated',
  optionSpecs: { cycles: { type: 'integer', min: 1, max: 1_000_000 }, sizeMiB: { type: 'integer', min: 1, max: 1024 } },
  seedableFaults: {
    'leak-registration': 'every measured cycle also registers a fresh 1 MiB region and keeps it',
    'leak-fd': 'every measured cycle (up to 10) the worker duplicates its container fd into itself',
    'leak-window': 'half-way through, a 64-bit DMA window is created and kept',
    'leak-controller-fd': 'every measured cycle the controller opens /dev/null and keeps it until the checks are done',
    'leak-controller-memory': 'every measured cycle the controller keeps 4 MiB of written memory until the checks are done',
  },
  async run(ctx) {
    const { agent, checks } = ctx;
    const cycles = Number(ctx.options.cycles ?? 100);
    const mib = Number(ctx.options.sizeMiB ?? 4);
    // About 20 points for the slopes, and a progress line at least every 50 cycles.
    const every = Math.max(1, Math.min(50, Math.floor(cycles / 20)));
    const dev = await findGuestDevice(agent, ctx.profile);
    const { group } = await agent.bind(dev.address);
    const w = await agent.startWorker();
    ctx.watchGuestPid(w.pid);
    await w.open(group);
    const r = await w.alloc(mib * 1024 * 1024);
    const series = {
      pins: [] as Array<[number, number]>,
      vmLck: [] as Array<[number, number]>,
      fds: [] as Array<[number, number]>,
      windows: [] as Array<[number, number]>,
      rss: [] as Array<[number, number]>,
      ctlFds: [] as Array<[number, number]>,
    };
    // What the controller-side seeded faults hold until the checks are done (then given back: a fault must not outlive its run).
    const controllerLeak = { fds: [] as number[], buffers: [] as Buffer[] };
    let settledPins: number | undefined;
    let sharedWith = 0;
    const measure = async (i: number) => {
      sharedWith = Math.max(sharedWith, Lab.active - 1);
      // FOLL_PIN releases land by RCU callback: judge pins once the last cycle's release has landed — seen, or the
      // counters at rest after RCU barriers in the guest (a leak), or 3 s on a kernel without the barrier.
      const s =
        settledPins === undefined
          ? await guestSampleNow(ctx)
          : ((await ctx.sampler.waitFor('guest', (c) => c.pinnedPages <= settledPins!, {
              after: ctx.sampler.now(),
              timeoutMs: 3000,
              until: atRestAfterRcuBarriers(agent),
            })) ?? (await guestSampleNow(ctx)));
      settledPins ??= s.counters.pinnedPages;
      series.pins.push([i, s.counters.pinnedPages]);
      series.vmLck.push([i, (await w.status()).vmLckKb]);
      series.fds.push([i, ((await agent.listDir(`/proc/${w.pid}/fd`)) ?? []).length]);
      series.windows.push([i, (await ctx.ddw.windows()).length]);
      series.rss.push([i, process.memoryUsage().rss / 1024]);
      series.ctlFds.push([i, readdirSync('/proc/self/fd').length]);
    };
    const containerFd = async () => {
      const fds = (await agent.listDir(`/proc/${w.pid}/fd`)) ?? [];
      return Number(fds.find((f) => f.target === '/dev/vfio/vfio')?.name ?? -1);
    };
    // Warm-up cycle: the 32-bit window's userspace view is accounted on first use.
    await w.register(r.region);
    await w.map(r.region, 0, { size: r.size });
    await w.unmap(0, r.size);
    await w.unregister(r.region);
    // Its release lands before the first point: after RCU barriers, or 1.5 s on a kernel without them.
    if (!(await settledAfterRcuBarriers(agent))) await new Promise((r) => setTimeout(r, 1500));
    await measure(0);
    let ms = 0;
    for (let i = 1; i <= cycles; i++) {
      const c0 = Date.now();
      await w.register(r.region);
      await w.map(r.region, 0, { size: r.size });
      await w.unmap(0, r.size);
      await w.unregister(r.region);
      ms += Date.now() - c0;
      if (i % every === 0) {
        if (ctx.seeded('leak-registration')) await w.register((await w.alloc(1024 * 1024)).region);
        if (ctx.seeded('leak-fd') && i / every <= 10) await w.adoptFds(w.pid, [await containerFd()]);
        if (ctx.seeded('leak-window') && i === every * Math.ceil(cycles / every / 2)) await w.createWindow(16, 1n << 30n);
        if (ctx.seeded('leak-controller-fd')) controllerLeak.fds.push(openSync('/dev/null', 'r'));
        // Written, so that its pages are resident (a zero-filled allocation may not be).
        if (ctx.seeded('leak-controller-memory')) controllerLeak.buffers.push(Buffer.alloc(4 * 1024 * 1024, 0x5a));
        await measure(i);
        ctx.progress.info(`  soak: ${i}/${cycles} cycles`);
      }
    }
    ctx.timings.push({ step: `${cycles} register/map/unmap/unregister cycles of ${mib} MiB`, ms });
    await measure(cycles + 1);
    const per100 = (pts: Array<[number, number]>) => slope(pts) * 100;
    const fmt = (v: number) => v.toFixed(3);
    checks.record(
      'soak: guest pinned pages per 100 cycles',
      Math.abs(per100(series.pins)) < 1,
      0,
      fmt(per100(series.pins)),
      `pages; ${series.pins.length} points`,
    );
    checks.record('soak: worker VmLck per 100 cycles', Math.abs(per100(series.vmLck)) < 1, 0, fmt(per100(series.vmLck)), 'kB');
    checks.record('soak: worker file descriptors per 100 cycles', Math.abs(per100(series.fds)) < 0.5, 0, fmt(per100(series.fds)));
    checks.record('soak: host DMA windows per 100 cycles', Math.abs(per100(series.windows)) < 0.5, 0, fmt(per100(series.windows)));
    // The controller's fds and RSS are process-wide: only this lab's when it ran alone in the controller.
    const alone = sharedWith === 0;
    const note = alone ? '' : `; not judged: ${sharedWith} other lab(s) shared this controller`;
    checks.record(
      'soak: controller file descriptors per 100 cycles',
      !alone || Math.abs(per100(series.ctlFds)) < 0.5,
      0,
      fmt(per100(series.ctlFds)),
      note.slice(2) || undefined,
    );
    // The controller's RSS moves with the garbage collector: a leak shows as a steady climb well past its noise,
    // which takes a few hundred cycles (seen: +4.3 MB over 100 fast cycles of a restored lab, no leak; +0.86 MB/100 over 1000).
    const longEnough = cycles >= 300;
    const rssNote = longEnough ? note : `; not judged under 300 cycles: the collector's noise dominates${note}`;
    checks.record(
      'soak: controller RSS per 100 cycles',
      !alone || !longEnough || per100(series.rss) < 2048,
      '< 2048',
      fmt(per100(series.rss)),
      `kB; ${(ms / cycles).toFixed(1)} ms per cycle${rssNote}`,
    );
    for (const fd of controllerLeak.fds.splice(0)) closeSync(fd);
    controllerLeak.buffers.length = 0;
    await w.stop('TERM');
    ctx.watchGuestPid(undefined);
    await agent.unbind(dev.address);
  },
};
