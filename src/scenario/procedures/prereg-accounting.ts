import type { AgentClient } from '../../agent/agent-client.js';
import type { ScenarioDefinition } from '../scenario.js';
import { findGuestDevice } from '../guest-vfio.js';
import { pinnedPages, waitForCounters } from '../guest-pins.js';
import { scanKernelLog } from '../kernel-log.js';

/**
 * How long a release that must come (deferred FOLL_PIN releases land ~1 s after the unpin) is waited for: the wait ends
 * at the release, so this only bounds one that never comes, generously for a slow or busy machine. Waits that expect
 * the pins to stay (defect 1's orphaned region) keep their own, short windows.
 */
const RELEASE_CEILING_MS = 30_000;

/** How many times the guest kernel has warned, in destroy_context(), that a dropped mm still listed a region. */
async function mmDropsWarned(agent: AgentClient): Promise<number> {
  const { stdout } = await agent.exec(['dmesg'], 10_000);
  return scanKernelLog(stdout).filter((r) => r.kind === 'WARNING' && /destroy_context/.test(r.line)).length;
}

/**
 * Wakes khugepaged without changing a setting: writing its scan interval (the value it has) wakes it now. A dead
 * process's mm that khugepaged still holds is dropped on its next pass (collect_mm_slot → mmdrop → destroy_context):
 * on 6.12 that is what ends the worker's mm, 5–20 s after its exit when khugepaged sleeps its 10 s. No THP: nothing.
 */
async function wakeKhugepaged(agent: AgentClient): Promise<void> {
  const path = '/sys/kernel/mm/transparent_hugepage/khugepaged/scan_sleep_millisecs';
  const ms = await agent.readFile(path).then(
    (r) => r.content.trim(),
    () => undefined,
  );
  if (ms) await agent.writeFile(path, ms).catch(() => {});
}

/** How a wait ended, for a check's detail: "after 58 ms", or "at rest after RCU barriers, 120 ms". */
function waitedFor(w: { elapsedMs: number; settledByRcuBarrier?: boolean }): string {
  return w.settledByRcuBarrier ? `at rest after RCU barriers in the guest, ${w.elapsedMs} ms` : `after ${w.elapsedMs} ms`;
}

/**
 * Found by this scenario on Debian's 6.12 kernel: tce_iommu_unregister_pages()
 * holds an extra mm_iommu_get() reference, so the mm_iommu_put() inside
 * tce_iommu_prereg_free() succeeds and the container forgets the region, while
 * the outer mm_iommu_put()'s -EBUSY ("still mapped") is discarded. The ioctl
 * returns 0, the region is orphaned, and its pages stay pinned for good: when
 * the process's mm is torn down, destroy_context() only warns that it still
 * lists the region. "Put pages on VFIO container shutdown" set out to prevent
 * exactly that.
 */
export const UNREGISTER_WHILE_MAPPED_DEFECT =
  'VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY of a mapped region returns 0 and orphans the registration ' +
  '(tce_iommu_unregister_pages discards the -EBUSY of its final mm_iommu_put); its pins are never put: when the mm goes, ' +
  'destroy_context() only warns that it still lists the region';

/** What the orphaned registration's pins did after its process was gone, as measured (src/bench/orphan-lifetime.ts). */
export const ORPHANED_PINS_MEASURED =
  'measured on Debian 6.12.107: after the process exits its pages are never put while the guest lives (still pinned 6 min later, ' +
  'after drop_caches and under memory pressure); destroy_context() warns when the mm is freed';

/**
 * Pre-registration accounting of the VFIO sPAPR TCE v2 container, in the
 * guest kernel: REGISTER_MEMORY of N MiB accounts exactly N MiB in the
 * process's locked_vm and pins exactly N MiB / page size pages; the second
 * registration of a region in one container is EBUSY (seed "Put pages on VFIO
 * container shutdown"); unknown → ENOENT; misaligned → EINVAL; unregistering a
 * mapped region → EBUSY; after unregistering, everything is back to baseline.
 */
export const preregAccounting: ScenarioDefinition = {
  name: 'prereg-accounting',
  description: 'REGISTER_MEMORY accounting (VmLck, FOLL_PIN) and its errno semantics in the guest kernel',
  defaultProfile: 'emulated',
  optionSpecs: { sizeMiB: { type: 'integer', min: 1, max: 4096 }, orphanWatchMs: { type: 'integer', min: 0, max: 600_000 } },
  seedableFaults: {
    'register-extra-mib': 'the first registration is 1 MiB larger than the N MiB the accounting checks expect',
    'second-register-fresh': 'the "same region again" registration uses a fresh region',
    'unknown-is-registered': 'the "never registered" unregister names a registered region',
    'ranges-valid': 'the misaligned and non-page-multiple registrations use a valid range',
    'unregister-other': 'the plain unregister names a region that was never registered, leaving the 8 MiB one registered',
  },
  async run(ctx) {
    const { agent, checks } = ctx;
    const mib = Number(ctx.options.sizeMiB ?? 32);
    const dev = await findGuestDevice(agent, ctx.profile);
    const bound = await agent.bind(dev.address);
    checks.equal(`${dev.address} bound to vfio-pci`, bound.group, dev.iommuGroup);
    const pageSize = (await agent.info()).pageSize;
    const pages = (n: number) => (n * 1024 * 1024) / pageSize;
    const worker = await agent.startWorker();
    await worker.open(bound.group);
    // The 32-bit window's userspace view (it_userspace) is accounted on first use:
    // map and unmap once so that later VmLck deltas are the registrations alone.
    const warm = await worker.alloc(1024 * 1024);
    await worker.register(warm.region);
    await worker.map(warm.region, 0, { size: 4096 });
    await worker.unmap(0, 4096);
    await worker.unregister(warm.region);
    await worker.free(warm.region);
    // Deferred releases of the warm-up land before the baseline is taken.
    const settled = await agent.counters(worker.pid);
    const baseline = (
      await waitForCounters(agent, (x) => pinnedPages(x) === pinnedPages(settled) - 256, { timeoutMs: 3000, pid: worker.pid, settle: true })
    ).counters;
    const baseLck = baseline.process!.vmLckKb!;

    // 1. Exact accounting of one registration.
    const a = await worker.alloc((mib + (ctx.seeded('register-extra-mib') ? 1 : 0)) * 1024 * 1024);
    await worker.register(a.region);
    ctx.phase('registered');
    const reg = await agent.counters(worker.pid);
    checks.equal(`VmLck grows by exactly ${mib} MiB`, reg.process!.vmLckKb! - baseLck, mib * 1024, 'kB');
    // The check's name is the same on every kernel (a matrix compares by name); the page size is in the detail.
    checks.equal(
      `FOLL_PIN acquired grows by exactly ${mib} MiB of pages`,
      reg.nrFollPinAcquired - baseline.nrFollPinAcquired,
      pages(mib),
      `${pageSize / 1024} KiB pages`,
    );
    checks.equal('pinned pages (acquired − released) grow by the same', pinnedPages(reg) - pinnedPages(baseline), pages(mib));

    // 2. errno semantics.
    const again = ctx.seeded('second-register-fresh') ? (await worker.alloc(1024 * 1024)).region : a.region;
    await checks.failsWith('registering the same region again in the container', worker.register(again), 'EBUSY');
    const b = await worker.alloc(1024 * 1024);
    const unknown = ctx.seeded('unknown-is-registered') ? (await worker.alloc(1024 * 1024)).region : b.region;
    if (unknown !== b.region) await worker.register(unknown);
    await checks.failsWith('unregistering a region that was never registered', worker.unregister(unknown), 'ENOENT');
    const valid = ctx.seeded('ranges-valid');
    const b2 = valid ? await worker.alloc(1024 * 1024) : b;
    await checks.failsWith('registering a misaligned range (offset 1)', worker.register(b.region, { offset: valid ? 0 : 1 }), 'EINVAL');
    await checks.failsWith(
      'registering a range whose size is not a page multiple',
      worker.register(b2.region, { size: valid ? pageSize : pageSize + 512 }),
      'EINVAL',
    );

    // 3. A plain unregister returns everything.
    const c = await worker.alloc(8 * 1024 * 1024);
    const beforeC = await agent.counters(worker.pid);
    await worker.register(c.region);
    const other = ctx.seeded('unregister-other') ? (await worker.alloc(1024 * 1024)).region : c.region;
    await checks.succeeds('unregistering an unmapped 8 MiB region', worker.unregister(other));
    const afterC = await waitForCounters(agent, (x) => pinnedPages(x) === pinnedPages(beforeC), {
      timeoutMs: RELEASE_CEILING_MS,
      pid: worker.pid,
      settle: true,
    });
    checks.equal('its pins are released', pinnedPages(afterC.counters) - pinnedPages(beforeC), 0, waitedFor(afterC));
    checks.equal('its VmLck is returned', afterC.counters.process!.vmLckKb! - beforeC.process!.vmLckKb!, 0, 'kB');

    // 4. Unregister while mapped.
    await checks.succeeds('mapping 1 MiB of the region at IOVA 0 of the 32-bit window', worker.map(a.region, 0, { size: 1024 * 1024 }));
    const refused = await checks.failsWith(
      'unregistering a region while it is mapped',
      worker.unregister(a.region),
      'EBUSY',
      UNREGISTER_WHILE_MAPPED_DEFECT,
    );
    await checks.succeeds('unmapping it', worker.unmap(0, 1024 * 1024));
    if (refused) {
      await checks.succeeds('unregistering the region once unmapped', worker.unregister(a.region));
      const back = await waitForCounters(agent, (x) => pinnedPages(x) === pinnedPages(baseline) && x.process?.vmLckKb === baseLck, {
        timeoutMs: RELEASE_CEILING_MS,
        pid: worker.pid,
        settle: true,
      });
      checks.equal('VmLck back to baseline after unregister', back.counters.process!.vmLckKb, baseLck, 'kB');
      checks.equal(
        'pinned pages back to baseline after unregister',
        pinnedPages(back.counters) - pinnedPages(baseline),
        0,
        `after ${back.elapsedMs} ms`,
      );
    } else {
      // The defect: the container no longer knows the region, and its pins stay.
      await checks.failsWith('the orphaned region is unknown to the container', worker.unregister(a.region), 'ENOENT');
      const held = await waitForCounters(agent, (x) => pinnedPages(x) === pinnedPages(baseline), {
        timeoutMs: 3000,
        pid: worker.pid,
        settle: true,
      });
      checks.equal(
        'the orphaned region keeps its pins while the process lives',
        pinnedPages(held.counters) - pinnedPages(baseline),
        pages(mib),
        `held by the mm, not by the container (${waitedFor(held)})`,
      );
    }

    // 5. The process going away. A container-held registration is put when the
    // container is released. An orphaned one is put by nothing: 6.12 has no
    // mm_iommu_cleanup(), destroy_context() only WARNs that the mm's list is
    // not empty (measured: see ORPHANED_PINS_MEASURED).
    if (!refused) {
      ctx.keepGuestPins({
        reason: 'the orphaned registration of defect 1 is never put',
        pages: pages(mib),
        knownDefect: UNREGISTER_WHILE_MAPPED_DEFECT,
      });
      ctx.expectKernelReport({
        pattern: /destroy_context/,
        knownDefect: `${UNREGISTER_WHILE_MAPPED_DEFECT}: destroy_context() warns that the mm still lists the region`,
      });
    }
    ctx.phase('worker exit');
    const warnedBefore = refused ? 0 : await mmDropsWarned(agent);
    const before = Date.now();
    await worker.stop('TERM');
    const watchMs = Number(ctx.options.orphanWatchMs ?? 5000);
    // A container's registration is put by an RCU callback once the reaped worker's fds are closed: barriers end that
    // wait. What could put an orphan is the mm's last drop, which no RCU barrier waits for: its watch ends once that
    // drop is seen (destroy_context() warns about the region it still lists), or at its window.
    let mmDropped = false;
    let lookedAt = 0;
    // The kernel log is read at most twice a second: each read is a process in the guest.
    const dropSeen = async () => {
      if (mmDropped || Date.now() - lookedAt < 500) return mmDropped;
      lookedAt = Date.now();
      await wakeKhugepaged(agent);
      mmDropped = (await mmDropsWarned(agent)) > warnedBefore;
      return mmDropped;
    };
    const gone = await waitForCounters(agent, (x) => pinnedPages(x) === pinnedPages(baseline), {
      timeoutMs: refused ? RELEASE_CEILING_MS : watchMs,
      settle: refused || dropSeen,
    });
    checks.record(
      'pinned pages back to baseline after the worker exits',
      gone.ok,
      0,
      pinnedPages(gone.counters) - pinnedPages(baseline),
      `${gone.ok ? 'released' : 'still held'} ${Date.now() - before} ms after SIGTERM` +
        (mmDropped && !gone.ok ? ', after the mm was dropped (destroy_context warned) and RCU barriers in the guest' : ''),
      refused ? undefined : `${UNREGISTER_WHILE_MAPPED_DEFECT}; ${ORPHANED_PINS_MEASURED}`,
    );
    await agent.unbind(dev.address);
  },
};
