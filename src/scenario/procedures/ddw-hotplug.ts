import { RPA_HOTPLUG_REQUIREMENTS } from '../../kernel/kernel-facts.js';
import type { ScenarioDefinition, ScenarioContext } from '../scenario.js';
import { Hotplugger, type StepTiming } from '../../hotplug/hotplug.js';
import { liobnOf, summarizeWindows, type DmaWindow } from '../../ddw/dma-window.js';
import { guestSampleNow } from '../guest-release.js';
import { findGuestDevice } from '../guest-vfio.js';
import { slope } from '../slope.js';
import { Lab } from '../../lab/lab.js';
import { closeSync, openSync, readdirSync } from 'node:fs';

const GiB = 1n << 30n;

/**
 * Found by this scenario on Debian's 6.12 guest kernel: removing a hot-plugged
 * PHB (drmgr -c phb -r) leaves its rpaphp slots registered; re-adding a PHB
 * at the same index logs "slot[...] is already registered" for each of them,
 * and configuring a slot on it then oopses in rpaphp's enable_slot().
 */
export const STALE_PHB_SLOTS_DEFECT =
  "rpadlpar_io does not deregister a removed PHB's rpaphp slots (they stay in /sys/bus/pci/slots); " +
  're-adding a PHB at the same index then oopses in rpaphp enable_slot() (run with --set reuseIndex=true to reproduce)';

/**
 * Hot-plug a DDW-enabled PHB and a device, bind it to vfio-pci, create a
 * 64-bit window, register and map memory, tear it all down and unplug, K
 * times; host and guest views agree at every step, and nothing grows from one
 * round to the next (windows, IOMMU groups, pinned pages).
 */
export const ddwHotplug: ScenarioDefinition = {
  name: 'ddw-hotplug',
  description: 'hot-plug PHB + device, DDW window, register+map, unplug; K rounds with no growth (--set repeat=K)',
  defaultProfile: 'emulated',
  requires: RPA_HOTPLUG_REQUIREMENTS,
  optionSpecs: {
    repeat: { type: 'integer', min: 1, max: 1000 },
    phbIndex: { type: 'integer', min: 1, max: 30 },
    reuseIndex: { type: 'boolean' },
  },
  // Seeded in the last round only: the rounds before it show the same checks passing in the same run.
  seedableFaults: {
    'register-more': 'in the last round, 4 MiB is registered (2 MiB mapped) where the check expects the 2 MiB',
    'window-before-look': 'in the last round, a 64-bit window is created before the first look at the host view',
    'window-4k': 'in the last round, the 64-bit window is created with 4 KiB pages; the host-view check expects 64 KiB',
    'keep-window': 'in the last round, the window is not removed before the look that expects it gone',
    'leak-pins': "in the last round, a worker on the profile's own device registers 2 MiB and lives on to the end",
    'leak-window': "in the last round, a worker on the profile's own device creates a 64-bit window and lives on to the end",
    'leak-controller-fd': 'in the last round, the controller opens /dev/null twice and keeps both until the slopes are judged',
    'unplug-after-look': 'in the last round, the device and its PHB are unplugged only after the look that expects them gone',
  },
  async run(ctx) {
    const rounds = Number(ctx.options.repeat ?? 3);
    const firstIndex = Number(ctx.options.phbIndex ?? Math.max(0, ...ctx.profile.phbs.map((p) => p.index)) + 1);
    // A fresh PHB index per round avoids the stale-slot defect below, unless asked to reproduce it.
    const reuseIndex = ctx.options.reuseIndex === true;
    const labHostDevice = ctx.profile.devices.find((d) => d.driver === 'vfio-pci');
    // Emulated lab: another edu; lab host: the profile's vfio-pci device is plugged at run time instead.
    const device = labHostDevice ? { id: 'hpdev', driver: 'vfio-pci', host: labHostDevice.host } : { id: 'hpdev', driver: 'edu' };
    const hp = new Hotplugger(ctx.lab.qmp, ctx.agent);
    const series = new RoundSeries();
    const controllerFds: number[] = [];
    const start = await lookAround(ctx, { id: `hphb${firstIndex}`, index: firstIndex });
    series.add(0, start);
    for (let round = 1; round <= rounds; round++) {
      const index = reuseIndex ? firstIndex : firstIndex + round - 1;
      const seeded = (fault: string) => round === rounds && ctx.seeded(fault);
      series.add(round, await playRound(ctx, hp, { round, index, phbId: `hphb${index}`, device, start, seeded, controllerFds }));
    }
    series.judge(ctx, rounds);
    for (const fd of controllerFds.splice(0)) closeSync(fd);
    // Only after rounds that ran to the end: a failed one fails the run, whose teardown takes what is plugged with the
    // machine. Unplugging from a guest that just failed a hotplug step only added drmgr's own failure, 12 s later.
    const left = await hp.unplugAll();
    if (left.length) ctx.checks.record('everything hot-plugged was unplugged', false, 'no errors', left.join('; '));
  },
};

/** What a round must leave as it found: the guest's slots, groups and pins, and the host's windows of the PHB. */
interface Surroundings {
  slots: number;
  groups: number;
  hostWindows: number;
  pinned: number;
}

async function lookAround(ctx: ScenarioContext, phb: { id: string; index: number }): Promise<Surroundings> {
  const info = await ctx.agent.info();
  const sample = await guestSampleNow(ctx);
  return {
    slots: (await ctx.agent.listDir('/sys/bus/pci/slots')).length,
    groups: info.iommuGroups.length,
    hostWindows: (await ctx.ddw.windows([phb])).length,
    pinned: sample.counters.pinnedPages,
  };
}

/**
 * One round: plug a DDW PHB and a device, bind it, open a container, create a 64-bit window, register and map
 * hugetlb memory into it, undo all of it, unplug, and check nothing grew. Returns what it left.
 */
async function playRound(
  ctx: ScenarioContext,
  hp: Hotplugger,
  r: {
    round: number;
    index: number;
    phbId: string;
    device: { id: string; driver: string; host?: string };
    start: Surroundings;
    /** Whether a seeded fault applies to this round. */
    seeded: (fault: string) => boolean;
    /** The controller's fds a seeded fault holds until the slopes are judged. */
    controllerFds: number[];
  },
): Promise<Surroundings> {
  const { agent, checks } = ctx;
  const { round, index, phbId, device, start, seeded } = r;
  if (seeded('leak-pins') || seeded('leak-window'))
    await leakOnOwnDevice(ctx, { pins: seeded('leak-pins'), window: seeded('leak-window') });
  if (seeded('leak-controller-fd')) r.controllerFds.push(openSync('/dev/null', 'r'), openSync('/dev/null', 'r'));
  const tag = `round ${round}`;
  const record = (ts: StepTiming[]) => ctx.timings.push(...ts.map((t) => ({ step: `${tag}: ${t.step}`, ms: t.ms })));
  const hostPhbWindows = async () => (await ctx.ddw.windows([{ id: phbId, index }])).filter((w) => w.phb === phbId);
  // The PHB brings its own IOMMU group: "new" means one the guest did not have before this round's plug.
  const groupsBefore = (await agent.info()).iommuGroups.map((g) => g.group);
  record((await hp.hotplugPhb(index, { id: phbId, ddw: true })).timings);
  ctx.phase(`${tag}: PHB plugged`);
  checks.equal(`${tag}: host QOM of the hot-plugged PHB has ddw=on`, (await ctx.ddw.phbState(phbId)).ddw, true);
  const dev = await hp.hotplugDevice(phbId, device);
  record(dev.timings);
  ctx.phase(`${tag}: device plugged`);
  checks.record(
    `${tag}: device in a new IOMMU group in the guest`,
    !groupsBefore.includes(dev.device.group),
    `a group other than ${groupsBefore.join(', ')}`,
    `${dev.device.address} in group ${dev.device.group}`,
  );

  const bound = await agent.bind(dev.device.address);
  const worker = await agent.startWorker();
  ctx.watchGuestPid(worker.pid);
  const opened = await worker.open(bound.group);
  const dma32: DmaWindow = {
    phb: phbId,
    liobn: liobnOf(index, 0),
    start: BigInt(opened.info.dma32WindowStart),
    size: BigInt(opened.info.dma32WindowSize),
    pageShift: 12,
  };
  const early = seeded('window-before-look') ? await worker.createWindow(16, GiB) : undefined;
  checks.equal(
    `${tag}: host view of the new PHB before DDW = the guest's 32-bit window`,
    summarizeWindows(await hostPhbWindows()),
    summarizeWindows([dma32]),
  );
  if (early) await worker.removeWindow(early.startAddr);
  const win = await worker.createWindow(seeded('window-4k') ? 12 : 16, GiB);
  ctx.phase(`${tag}: window live`);
  const want: DmaWindow = { phb: phbId, liobn: liobnOf(index, 1), start: BigInt(win.startAddr), size: GiB, pageShift: 16 };
  checks.equal(
    `${tag}: host view shows the guest's 64-bit window`,
    summarizeWindows(await hostPhbWindows()),
    summarizeWindows([dma32, want]),
  );

  const size = 2 * 1024 * 1024;
  const before = await guestSampleNow(ctx);
  const region = await worker.alloc(seeded('register-more') ? 2 * size : size, true);
  await worker.register(region.region);
  await worker.map(region.region, want.start, { size });
  const mapped = await guestSampleNow(ctx);
  // Named the same on every kernel; the count follows its page size.
  const pageSize = (await agent.info()).pageSize;
  checks.equal(`${tag}: registering 2 MiB pins 2 MiB of pages`, mapped.counters.pinnedPages - before.counters.pinnedPages, size / pageSize);

  await worker.unmap(want.start, size);
  await worker.unregister(region.region);
  if (!seeded('keep-window')) await worker.removeWindow(win.startAddr);
  checks.equal(
    `${tag}: host view after removing the window = the 32-bit window`,
    summarizeWindows(await hostPhbWindows()),
    summarizeWindows([dma32]),
  );
  await worker.stop('TERM');
  ctx.watchGuestPid(undefined);
  await agent.unbind(dev.device.address);

  const unplug = async () => {
    record(await hp.unplugDevice(device.id));
    ctx.phase(`${tag}: device unplugged`);
    record(await hp.unplugPhb(phbId));
    ctx.phase(`${tag}: PHB unplugged`);
  };
  const unplugLate = seeded('unplug-after-look');
  if (!unplugLate) await unplug();
  checks.equal(`${tag}: host has no window of the unplugged PHB`, summarizeWindows(await hostPhbWindows()), 'none');

  const now = await lookAround(ctx, { id: phbId, index });
  checks.equal(`${tag}: no growth in IOMMU groups`, now.groups, start.groups);
  checks.record(
    `${tag}: no growth in the guest's PCI hotplug slots`,
    now.slots === start.slots,
    start.slots,
    now.slots,
    `${now.slots - start.slots} slots left behind`,
    STALE_PHB_SLOTS_DEFECT,
  );
  checks.equal(`${tag}: no growth in host DMA windows`, now.hostWindows, start.hostWindows);
  if (unplugLate) await unplug();
  await waitPins(ctx, start.pinned);
  const settled = await guestSampleNow(ctx);
  checks.equal(`${tag}: no growth in guest pinned pages`, settled.counters.pinnedPages - start.pinned, 0);
  return { ...now, pinned: settled.counters.pinnedPages };
}

/** Per-round series of what must not grow, the controller's own fds and RSS included; judged as slopes. */
class RoundSeries {
  private readonly pins: Array<[number, number]> = [];
  private readonly ctlFds: Array<[number, number]> = [];
  private readonly rss: Array<[number, number]> = [];
  /** The most other labs this controller ran at once during the rounds. */
  private sharedWith = 0;

  add(round: number, s: Surroundings): void {
    this.sharedWith = Math.max(this.sharedWith, Lab.active - 1);
    this.pins.push([round, s.pinned]);
    this.ctlFds.push([round, readdirSync('/proc/self/fd').length]);
    this.rss.push([round, process.memoryUsage().rss / 1024]);
  }

  /** Slopes per round over all rounds: a leak too small to see in one round shows here. */
  judge(ctx: ScenarioContext, rounds: number): void {
    const { checks } = ctx;
    const f = (v: number) => v.toFixed(3);
    // Groups and windows are whole counts, and each round's no-growth check already fails on one more of either:
    // a slope would add nothing. Pinned pages can leak by less than a page per round on average; they get one.
    for (const [name, pts, unit] of [['guest pinned pages', this.pins, 'pages']] as const) {
      checks.record(
        `slope of ${name} per round over ${rounds} rounds`,
        Math.abs(slope([...pts])) < 0.5,
        0,
        f(slope([...pts])),
        unit || undefined,
      );
    }
    // The controller's own fds and memory are process-wide: only this lab's when it ran alone.
    const alone = this.sharedWith === 0;
    const note = alone ? undefined : `not judged: ${this.sharedWith} other lab(s) shared this controller`;
    checks.record(
      `slope of controller file descriptors per round over ${rounds} rounds`,
      !alone || Math.abs(slope(this.ctlFds)) < 0.5,
      0,
      f(slope(this.ctlFds)),
      note,
    );
    // RSS also grows with the timeline recorded for the report and with V8's lazy collection: a slope
    // over a few long rounds cannot tell that from a leak, so it is judged from 10 rounds on.
    const judgeRss = alone && rounds >= 10;
    const rssNote = note ?? (judgeRss ? 'kB' : `kB; not judged with ${rounds} rounds (from 10 on: --set repeat=50 for the full soak)`);
    checks.record(
      `slope of controller RSS per round over ${rounds} rounds`,
      !judgeRss || slope(this.rss) < 2048,
      '< 2048',
      f(slope(this.rss)),
      rssNote,
    );
  }
}

/**
 * The leak-pins and leak-window faults: a worker on the profile's own device registers 2 MiB and/or creates a
 * 64-bit window, and is left alive (the guest balance sees it; the round's look around sees the pins and the window).
 */
async function leakOnOwnDevice(ctx: ScenarioContext, what: { pins: boolean; window: boolean }): Promise<void> {
  const dev = await findGuestDevice(ctx.agent, ctx.profile);
  const { group } = await ctx.agent.bind(dev.address);
  const worker = await ctx.agent.startWorker();
  await worker.open(group);
  if (what.pins) await worker.register((await worker.alloc(2 * 1024 * 1024)).region);
  if (what.window) await worker.createWindow(16, GiB);
}

async function waitPins(ctx: ScenarioContext, pinned: number): Promise<void> {
  await ctx.sampler.waitFor('guest', (c) => c.pinnedPages === pinned, { after: ctx.sampler.now(), timeoutMs: 5000 });
}
