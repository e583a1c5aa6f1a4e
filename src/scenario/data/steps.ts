import type { VfioWorker } from '../../agent/agent-client.js';
import { EEH_OPS, FOREIGN_HOWS } from '../../agent/types.js';
import { Hotplugger } from '../../hotplug/hotplug.js';
import type { Sample } from '../../probes/sampler.js';
import type { Lab } from '../../lab/lab.js';
import { TcelabError } from '../../util/errors.js';
import type { InferFields, Spec } from '../../util/validate.js';
import { RPA_HOTPLUG_REQUIREMENTS, type KernelRequirements } from '../../kernel/kernel-facts.js';
import { describeHolders } from '../guest-balance.js';
import { awaitGuestRelease, guestSampleNow } from '../guest-release.js';
import { findGuestDevice } from '../guest-vfio.js';
import { adoptInnerVfioFds, launchInnerLab } from '../nested.js';
import { COPY } from '../procedures/dma-integrity.js';
import { ddwPeArgs, type GuestHypercalls } from '../../agent/hcall.js';
import {
  entryCount,
  expectedAnswer,
  guardedEntries,
  HCALL_NAMES,
  handlerOf,
  HOSTILE_MODULE,
  hypercalls,
  iobaOf,
  issue,
  RETURN_NAMES,
  RTAS_NAMES,
  readEntries,
  recordAnswer,
  type TceWindow,
  expectDefectReports,
} from '../hostile-calls.js';
import {
  describeDefect,
  KERNEL_DEFECT_IDS,
  KERNEL_DEFECTS,
  kernelHasFix,
  type KernelDefect,
  type KernelDefectId,
} from '../kernel-defects.js';
import type { ScenarioContext, ScenarioDefinition } from '../scenario.js';
import { ANSWER_DEFECT_NAMES, ANSWER_DEFECTS, type AnswerDefect, type AnswerDefectName } from '../answer-defects.js';

/**
 * The step vocabulary of scenario files, one entry per step type: what it is for, its fields (checked when the
 * file is loaded) and what it does. Every step is {"step": <type>, ...} with an optional "timeoutSec"; names
 * given with "as" are referred to by later steps (a worker, a binding, a region, a window, a mark, an inner lab).
 * A new step type is one entry here; docs/scenarios.md's table of steps is checked against this table.
 */

const MiB = 1024 * 1024;

/** What the steps of one run have made so far, by the names the file gave them. */
export interface StepState {
  bindings: Map<string, { address: string; group: number }>;
  workers: Map<string, VfioWorker>;
  regions: Map<string, { worker: string; region: number; size: number }>;
  windows: Map<string, { start: bigint; size: bigint }>;
  /** Where a map step put each region (its IOVA), for the device's copies. */
  mappedAt: Map<string, bigint>;
  marks: Map<string, Sample>;
  hotplug?: Hotplugger;
  /** Inner labs of a nested lab host, by name; disposed at the end whatever happened. */
  inners: Map<string, Lab>;
  /** Windows as the hypercalls address them (tce-window, a created DDW), by name. */
  tceWindows: Map<string, TceWindow>;
  /** The hostile-call module once loaded in the guest, or why it cannot be. */
  hostile: { hc?: GuestHypercalls | string };
  /** The last action that may release pins: what expect-release measures from. */
  lastEvent?: { name: string; t: number };
  /** The guest kernel's release (uname -r), asked once: which known defects it may show (answer-defects.ts). */
  kernelRelease?: Promise<string>;
  /** Guest pages a known defect left pinned for good (answer-defects.ts: leavesRegionPinned), summed over the run. */
  keptPages?: number;
}

/** What a step's run gets besides its own fields. */
export interface StepEnv {
  ctx: ScenarioContext;
  st: StepState;
  /** "step 3: register": how checks and errors name this step. */
  tag: string;
  procedures: ScenarioDefinition[];
  /** Something that may release pins happened now: expect-release measures from the last one. */
  event(name: string): void;
  /** A thing an earlier step named with "as". */
  named<T>(m: Map<string, T>, key: string, what: string): T;
  /**
   * Runs an operation that may be expected to fail with an errno (expectError), as a check; knownDefects: the defects
   * whose answer it may give instead on a kernel without their fix (answer-defects.ts). Resolves to the one it showed.
   */
  expectable(
    label: string,
    op: Promise<unknown>,
    expectError: string | undefined,
    knownDefects?: readonly AnswerDefectName[],
  ): Promise<AnswerDefectName | undefined>;
}

const name = {
  type: 'string',
  pattern: /^[A-Za-z][A-Za-z0-9_-]{0,31}$/,
  patternHint: 'a name: a letter, then letters, digits, - or _',
} as const;
const opt = <const T extends Spec>(s: T): T & { optional: true } => ({ ...s, optional: true });
// An errno name, or ERETURN+<n>: the worker's class for an ioctl that returned n instead of 0 or -1 (defect 5's +1).
const errno = opt({
  type: 'string',
  pattern: /^E[A-Z0-9]+$|^ERETURN[+-]\d+$/,
  patternHint: 'an errno name such as EBUSY, or ERETURN+1 for an ioctl that returned 1',
} as const);
const mib = (max: number) => ({ type: 'integer', min: 1, max }) as const;
/** Bytes added to a MiB position: what makes an address deliberately unaligned. */
const bytes = opt({ type: 'integer', min: 0, max: 1 << 30 } as const);
const knownDefects = opt({ type: 'array', maxItems: 4, items: { type: 'string', enum: ANSWER_DEFECT_NAMES } } as const);

export interface StepEntry<F extends Record<string, Spec> = Record<string, Spec>> {
  /** One line for the README's table of steps. */
  doc: string;
  /** What it needs of the guest kernel beyond VFIO sPAPR. */
  requires?: KernelRequirements;
  /** The guest module (guest/<name>) it drives: built for the kernel before the lab starts. */
  guestModule?: string;
  fields: F;
  run(s: InferFields<F> & { timeoutSec?: number }, env: StepEnv): Promise<void>;
}

/** Declares a step; its run receives its fields typed as the schema says. */
const step = <const F extends Record<string, Spec>>(
  doc: string,
  fields: F,
  run: (s: InferFields<F> & { timeoutSec?: number }, env: StepEnv) => Promise<void>,
  requires?: KernelRequirements,
  guestModule?: string,
): StepEntry<F> => ({ doc, fields, run, requires, guestModule });

const hex = { type: 'string', pattern: /^0x[0-9a-fA-F]{1,16}$/, patternHint: 'a 64-bit value in hex, e.g. 0x80000000' } as const;
const pciAddress = {
  type: 'string',
  pattern: /^[0-9a-f]{4}:[0-9a-f]{2}:[0-1][0-9a-f]\.[0-7]$/,
  patternHint: 'a PCI address such as 0000:00:01.0',
} as const;
const label = opt({ type: 'string', pattern: /^[\w ,.:+()=<>/^'-]{1,80}$/, patternHint: 'a short label for the check' } as const);
const hexWord = (v: number) => `0x${v.toString(16)}`;
const hcallExpect = {
  type: 'string',
  pattern: new RegExp(`^(${RETURN_NAMES.join('|')})$`),
  patternHint: "a hypercall return code's name, such as H_PARAMETER (asm/hvcall.h)",
} as const;

/** register / unregister: the same fields and checks, one ioctl apart. */
const registration = (doc: string, op: 'register' | 'unregister') =>
  step(doc, { worker: name, region: name, expectError: errno }, async (s, { st, named, expectable, event, tag }) => {
    const r = named(st.regions, s.region, 'region');
    await expectable(s.region, named(st.workers, s.worker, 'worker')[op](r.region), s.expectError);
    event(`${tag} ${s.region}`);
  });

const timings = (ctx: ScenarioContext, tag: string, list: Array<{ step: string; ms: number }>) =>
  ctx.timings.push(...list.map((t) => ({ step: `${tag}: ${t.step}`, ms: t.ms })));

export const STEPS = {
  bind: step('binds a profile device (by id) in the guest to vfio-pci', { device: name, as: name }, async (s, { ctx, st }) => {
    const dev = await findGuestDevice(ctx.agent, ctx.profile, s.device);
    const b = await ctx.agent.bind(dev.address);
    st.bindings.set(s.as, { address: dev.address, group: b.group });
  }),
  unbind: step('gives a bound device back to its driver', { binding: name }, async (s, { ctx, st, named }) => {
    await ctx.agent.unbind(named(st.bindings, s.binding, 'binding').address);
  }),
  'start-worker': step('starts a guest process that holds VFIO fds and memory for later steps', { as: name }, async (s, { ctx, st }) => {
    const w = await ctx.agent.startWorker();
    st.workers.set(s.as, w);
    ctx.watchGuestPid(w.pid);
  }),
  'stop-worker': step(
    'signals a worker (TERM by default, or KILL) and waits for it to exit',
    { worker: name, signal: opt({ type: 'string', enum: ['TERM', 'KILL'] }) },
    async (s, { tag, st, named, event }) => {
      await named(st.workers, s.worker, 'worker').stop(s.signal ?? 'TERM');
      event(`${tag} (${s.worker})`);
    },
  ),
  open: step(
    "opens the binding's IOMMU group and a VFIO container (sPAPR TCE v2) in the worker",
    { worker: name, binding: name },
    async (s, { st, named }) => {
      await named(st.workers, s.worker, 'worker').open(named(st.bindings, s.binding, 'binding').group);
    },
  ),
  alloc: step(
    'maps sizeMiB of anonymous (or hugetlb) memory in the worker',
    { worker: name, sizeMiB: mib(65536), hugetlb: opt({ type: 'boolean' }), as: name },
    async (s, { st, named }) => {
      const r = await named(st.workers, s.worker, 'worker').alloc(s.sizeMiB * MiB, s.hugetlb === true);
      st.regions.set(s.as, { worker: s.worker, region: r.region, size: r.size });
    },
  ),
  register: registration('VFIO_IOMMU_SPAPR_REGISTER_MEMORY of a region (pre-registration: pins its pages)', 'register'),
  unregister: registration('VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY of a region', 'unregister'),
  'create-window': step(
    'VFIO_IOMMU_SPAPR_TCE_CREATE: a DMA window of 2^pageShift pages, sizeMiB long',
    {
      worker: name,
      pageShift: { type: 'integer', min: 12, max: 34 },
      sizeMiB: mib(1 << 24),
      levels: opt({ type: 'integer', min: 1, max: 5 }),
      as: name,
      expectError: errno,
    },
    async (s, { ctx, st, named, tag }) => {
      const size = BigInt(s.sizeMiB) * BigInt(MiB);
      const op = named(st.workers, s.worker, 'worker').createWindow(s.pageShift, size, s.levels ?? 1);
      if (s.expectError) {
        await ctx.checks.failsWith(`${tag} ${s.as}`, op, s.expectError);
        return;
      }
      const w = await op;
      st.windows.set(s.as, { start: BigInt(w.startAddr), size });
      ctx.phase(`${tag} ${s.as}`);
    },
  ),
  'remove-window': step(
    'VFIO_IOMMU_SPAPR_TCE_REMOVE of a window',
    { worker: name, window: name, expectError: errno },
    async (s, { st, named, expectable }) => {
      const w = named(st.windows, s.window, 'window');
      await expectable(s.window, named(st.workers, s.worker, 'worker').removeWindow(`0x${w.start.toString(16)}`), s.expectError);
      if (!s.expectError) st.windows.delete(s.window);
    },
  ),
  map: step(
    "VFIO_IOMMU_MAP_DMA of a region (or its first sizeMiB, from offsetBytes into it) at a window's start (or atMiB + atBytes " +
      'into it); perm: what the device may do; knownDefects: the answers of defects it may give instead of expectError',
    {
      worker: name,
      region: name,
      window: name,
      sizeMiB: opt(mib(65536)),
      atMiB: opt({ type: 'integer', min: 0, max: 1 << 24 }),
      atBytes: bytes,
      offsetBytes: bytes,
      perm: opt({ type: 'string', enum: ['rw', 'read', 'write'] }),
      expectError: errno,
      knownDefects,
    },
    async (s, { ctx, st, named, expectable, tag }) => {
      const r = named(st.regions, s.region, 'region');
      const w = named(st.windows, s.window, 'window');
      const iova = w.start + BigInt(s.atMiB ?? 0) * BigInt(MiB) + BigInt(s.atBytes ?? 0);
      const offset = s.offsetBytes ?? 0;
      const op = named(st.workers, s.worker, 'worker').map(r.region, iova, {
        size: s.sizeMiB ? s.sizeMiB * MiB : r.size - offset,
        perm: s.perm,
        ...(offset ? { offset } : {}),
      });
      const shown = await expectable(`${s.region} into ${s.window}`, op, s.expectError, s.knownDefects);
      if (!s.expectError) st.mappedAt.set(s.region, iova);
      const defect: AnswerDefect | undefined = shown && ANSWER_DEFECTS[shown];
      if (defect?.leavesRegionPinned) {
        // The region stays pinned for good: the run's verdicts report it (and the kernel's words on it) as the defect.
        st.keptPages = (st.keptPages ?? 0) + r.size / (await ctx.agent.info()).pageSize;
        ctx.keepGuestPins({
          reason: `regions left with a reference no mapping holds (the last: ${s.region}, ${tag})`,
          pages: st.keptPages,
          knownDefect: describeDefect(shown!),
        });
        ctx.expectKernelReport({ pattern: defect.leavesRegionPinned.kernelReport, knownDefect: describeDefect(shown!) });
      }
    },
  ),
  unmap: step(
    "VFIO_IOMMU_UNMAP_DMA of sizeMiB at a window's start (or atMiB + atBytes into it); knownDefects as for map",
    {
      worker: name,
      window: name,
      sizeMiB: mib(65536),
      atMiB: opt({ type: 'integer', min: 0, max: 1 << 24 }),
      atBytes: bytes,
      expectError: errno,
      knownDefects,
    },
    async (s, { st, named, expectable }) => {
      const at = named(st.windows, s.window, 'window').start + BigInt(s.atMiB ?? 0) * BigInt(MiB) + BigInt(s.atBytes ?? 0);
      const op = named(st.workers, s.worker, 'worker').unmap(at, s.sizeMiB * MiB);
      await expectable(`${s.sizeMiB} MiB at 0x${at.toString(16)} of ${s.window}`, op, s.expectError, s.knownDefects);
    },
  ),
  foreign: step(
    "gives the worker's container to another holder, usable as a worker by its name (as): a forked child (fork), a fresh " +
      'program that receives the fd over a unix socket (scm-rights) or takes it with pidfd_getfd (pidfd-getfd); or a ' +
      'thread of the worker (thread: the same mm, the control)',
    { worker: name, how: { type: 'string', enum: FOREIGN_HOWS }, as: name },
    async (s, { ctx, st, named, tag }) => {
      const f = await named(st.workers, s.worker, 'worker').spawnForeign(s.how);
      st.workers.set(s.as, f);
      ctx.phase(`${tag} ${s.as}: ${s.how} of ${s.worker} (pid ${f.pid})`);
    },
  ),
  'get-info': step(
    "VFIO_IOMMU_SPAPR_TCE_GET_INFO on the worker's container",
    { worker: name, expectError: errno },
    async (s, { st, named, expectable }) => {
      await expectable(s.worker, named(st.workers, s.worker, 'worker').info(), s.expectError);
    },
  ),
  enable: step(
    "VFIO_IOMMU_ENABLE on the worker's container (a v2 container has none: ENOTTY)",
    { worker: name, expectError: errno },
    async (s, { st, named, expectable }) => {
      await expectable(s.worker, named(st.workers, s.worker, 'worker').enable(), s.expectError);
    },
  ),
  eeh: step(
    "one VFIO_EEH_PE_OP on the worker's container; a return of 0 or more (get-state: the PE's state) is success",
    { worker: name, op: { type: 'string', enum: EEH_OPS }, expectError: errno },
    async (s, { ctx, st, named, tag }) => {
      const op = named(st.workers, s.worker, 'worker').eeh(s.op);
      const label = `${tag} ${s.op} from ${s.worker}`;
      if (s.expectError) {
        await ctx.checks.failsWith(label, op, s.expectError);
        return;
      }
      const got = await ctx.checks.succeeds(label, op, (v) => `returned ${v.ret} (VFIO_CHECK_EXTENSION(VFIO_EEH) = ${v.eehExtension})`);
      if (got === undefined) throw new TcelabError(tag, `${s.op} from ${s.worker} failed`);
    },
  ),
  'device-open': step(
    "opens the binding's device in the worker for DMA: BAR0 mapped, bus master on, its MSI on an eventfd (QEMU's edu)",
    { worker: name, binding: name },
    async (s, { st, named, tag }) => {
      const w = named(st.workers, s.worker, 'worker');
      const d = await w.deviceOpen(named(st.bindings, s.binding, 'binding').address);
      if (!d.edu) throw new TcelabError(tag, `${d.address} is not QEMU's edu (id register ${d.id})`, 'bind an edu device');
      await w.msiEnable();
    },
  ),
  'dma-copy': step(
    'the device copies size bytes (at most 4032: QEMU 7.2 aborts on a full 4 KiB) at offset of region from into region to, where map put each; ' +
      'expect: intact (the default), unchanged (the destination keeps its sentinel) or zeros',
    {
      worker: name,
      from: name,
      to: name,
      offset: opt({ type: 'integer', min: 0, max: 1 << 30 }),
      size: opt({ type: 'integer', min: 1, max: COPY }),
      irq: opt({ type: 'boolean' }),
      expect: opt({ type: 'string', enum: ['intact', 'unchanged', 'zeros'] }),
    },
    async (s, { ctx, st, named, tag }) => {
      const w = named(st.workers, s.worker, 'worker');
      const [from, to] = [named(st.regions, s.from, 'region'), named(st.regions, s.to, 'region')];
      const at = (r: string) => named(st.mappedAt, r, 'mapped region (a map step)');
      const offset = s.offset ?? 0;
      const size = s.size ?? COPY;
      const seed = ctx.timings.length + 1;
      await w.fill(from.region, { offset, size }, seed);
      await w.fill(to.region, { offset, size }, seed + 5000);
      const into = await w.dma({ direction: 'to-device', iova: at(s.from) + BigInt(offset), size, irq: s.irq });
      const out = await w.dma({ direction: 'from-device', iova: at(s.to) + BigInt(offset), size, irq: s.irq });
      ctx.timings.push({ step: `${tag}: RAM → device → RAM`, ms: into.durationMs + out.durationMs });
      const expect = s.expect ?? 'intact';
      const got = await w.check(to.region, { offset, size }, expect === 'unchanged' ? seed + 5000 : seed);
      const pass = expect === 'zeros' ? got.zeroBytes === got.size : got.equal;
      const measured =
        got.zeroBytes === got.size ? 'zeros' : got.equal ? expect : `${got.mismatches} of ${got.size} bytes differ, ${got.zeroBytes} zero`;
      ctx.checks.record(`${tag}: ${s.from} → device → ${s.to}`, pass, expect, measured, `irqs ${into.irqs} + ${out.irqs}`);
    },
  ),
  'device-close': step("closes the worker's device (MSI off, BAR0 unmapped)", { worker: name }, async (s, { st, named }) => {
    await named(st.workers, s.worker, 'worker').deviceClose();
  }),
  'close-container': step("closes the worker's container fd", { worker: name }, async (s, { st, named, event, tag }) => {
    await named(st.workers, s.worker, 'worker').closeContainer();
    event(`${tag} (${s.worker})`);
  }),
  'close-group': step("closes the worker's group fd", { worker: name }, async (s, { st, named, event, tag }) => {
    await named(st.workers, s.worker, 'worker').closeGroup();
    event(`${tag} (${s.worker})`);
  }),
  mark: step("remembers the guest's counters now, for later expect- steps", { as: name }, async (s, { ctx, st }) => {
    st.marks.set(s.as, await guestSampleNow(ctx));
  }),
  'expect-guest-pins': step(
    "checks the guest's pinned pages changed by exactly mib MiB (or pages pages) since a mark",
    { since: name, mib: opt({ type: 'integer', min: 0, max: 65536 }), pages: opt({ type: 'integer', min: 0, max: 1 << 30 }) },
    async (s, { ctx, st, named, tag }) => {
      const base = named(st.marks, s.since, 'mark');
      const now = await guestSampleNow(ctx);
      // mib counts in the guest kernel's own pages (4 KiB or 64 KiB).
      const want = s.pages !== undefined ? s.pages : ((s.mib ?? 0) * MiB) / (await ctx.agent.info()).pageSize;
      ctx.checks.equal(`${tag} since ${s.since}`, now.counters.pinnedPages - base.counters.pinnedPages, want, 'pages');
    },
  ),
  'expect-guest-locked': step(
    "checks the watched guest process's VmLck changed by exactly mib MiB (or kb kB) since a mark",
    { since: name, mib: opt({ type: 'integer', min: 0, max: 65536 }), kb: opt({ type: 'integer', min: 0, max: 1 << 30 }) },
    async (s, { ctx, st, named, tag }) => {
      const base = named(st.marks, s.since, 'mark');
      const now = await guestSampleNow(ctx);
      const want = s.kb !== undefined ? s.kb : (s.mib ?? 0) * 1024;
      ctx.checks.equal(`${tag} VmLck since ${s.since}`, (now.counters.vmLckKb ?? 0) - (base.counters.vmLckKb ?? 0), want, 'kB');
    },
  ),
  'expect-release': step(
    "checks the guest's pins return to a mark within withinSec of the last releasing step; names the holders when not",
    { since: name, withinSec: { type: 'integer', min: 1, max: 600 } },
    async (s, { ctx, st, named, tag }) => {
      const base = named(st.marks, s.since, 'mark');
      const from = st.lastEvent ?? { name: tag, t: ctx.phase(tag) };
      const v = await awaitGuestRelease(ctx, base, from.name, from.t, s.withinSec * 1000);
      ctx.checks.record(
        `${tag} back to ${s.since} within ${s.withinSec} s`,
        v.returned,
        v.baseline,
        v.final,
        v.returned ? `release latency ${v.latencyMs} ms` : `not released: ${describeHolders(await ctx.agent.pinHolders())}`,
      );
    },
  ),
  'expect-host-windows': step(
    "checks how many DMA windows the host's QEMU shows on a PHB",
    { phb: name, count: { type: 'integer', min: 0, max: 8 } },
    async (s, { ctx, st, tag }) => {
      const extra = [...(st.hotplug?.phbs.values() ?? [])];
      const ws = (await ctx.ddw.windows(extra)).filter((w) => w.phb === s.phb);
      ctx.checks.equal(`${tag} ${s.phb}`, ws.length, s.count);
    },
  ),
  'hotplug-phb': step(
    'hot-plugs a PHB (DDW unless ddw is false) and has the guest add it (drmgr)',
    { index: { type: 'integer', min: 1, max: 30 }, ddw: opt({ type: 'boolean' }), as: name },
    async (s, { ctx, st, tag }) => {
      st.hotplug ??= new Hotplugger(ctx.lab.qmp, ctx.agent);
      timings(ctx, tag, (await st.hotplug.hotplugPhb(s.index, { id: s.as, ddw: s.ddw !== false })).timings);
    },
    RPA_HOTPLUG_REQUIREMENTS,
  ),
  'hotplug-device': step(
    'hot-plugs a device on a hot-plugged PHB, has the guest add it, and binds it to vfio-pci under its own name',
    { phb: name, driver: { type: 'string', pattern: /^[a-z0-9][a-z0-9_-]*$/ }, host: opt({ type: 'string' }), as: name },
    async (s, { ctx, st, tag }) => {
      st.hotplug ??= new Hotplugger(ctx.lab.qmp, ctx.agent);
      const r = await st.hotplug.hotplugDevice(s.phb, { id: s.as, driver: s.driver, host: s.host });
      st.bindings.set(s.as, { address: r.device.address, group: r.device.group });
      timings(ctx, tag, r.timings);
      await ctx.agent.bind(r.device.address);
    },
    RPA_HOTPLUG_REQUIREMENTS,
  ),
  'unplug-device': step(
    'unbinds and unplugs a hot-plugged device',
    { device: name },
    async (s, { ctx, st, tag }) => {
      const b = st.bindings.get(s.device);
      if (b) await ctx.agent.unbind(b.address).catch(() => {});
      timings(ctx, tag, await hotplugger(st, tag).unplugDevice(s.device));
    },
    RPA_HOTPLUG_REQUIREMENTS,
  ),
  'unplug-phb': step(
    'unplugs a hot-plugged PHB',
    { phb: name },
    async (s, { ctx, st, tag }) => {
      timings(ctx, tag, await hotplugger(st, tag).unplugPhb(s.phb));
    },
    RPA_HOTPLUG_REQUIREMENTS,
  ),
  'guest-exec': step(
    'runs a program in the guest; fails on a non-zero exit unless expectExit names the expected one',
    { argv: { type: 'array', maxItems: 64, items: { type: 'string' } }, expectExit: opt({ type: 'integer', min: 0, max: 255 }) },
    async (s, { ctx, tag }) => {
      const r = await ctx.agent.exec(s.argv, (s.timeoutSec ?? 300) * 1000);
      const detail = r.stderr.trim().slice(0, 300);
      if (s.expectExit !== undefined) ctx.checks.equal(`${tag} ${s.argv.join(' ')}`, r.exitCode, s.expectExit, detail || undefined);
      else if (r.exitCode !== 0) throw new TcelabError(tag, `${s.argv.join(' ')} exited with ${r.exitCode}: ${detail}`);
    },
  ),
  sleep: step('waits ms milliseconds', { ms: { type: 'integer', min: 0, max: 600_000 } }, async (s) => {
    await new Promise((r) => setTimeout(r, s.ms));
  }),
  shutdown: step(
    'shuts the guest down (powerdown, the agent, or QMP quit); the run judges the host afterwards',
    { via: { type: 'string', enum: ['powerdown', 'agent', 'quit'] } },
    async (s, { ctx, tag }) => {
      const sd = await ctx.shutdown(s.via);
      ctx.checks.equal(`${tag} via ${s.via} without escalation`, sd.escalations, []);
    },
  ),
  'inner-launch': step(
    "starts the nested lab host's inner QEMU in the guest (its VmLck joins the guest samples)",
    { as: name },
    async (s, { ctx, st, tag }) => {
      const t0 = Date.now();
      const lab = await launchInnerLab(ctx);
      st.inners.set(s.as, lab);
      ctx.timings.push({ step: `${tag}: inner QEMU start to QMP`, ms: Date.now() - t0 });
      // Pre-registration is done by the time QMP answers.
      ctx.watchGuestPid(lab.process.pid);
      ctx.phase(`${tag} (${s.as}, pid ${lab.process.pid})`);
    },
  ),
  'inner-shutdown': step(
    'ends an inner QEMU with QMP quit, SIGTERM or SIGKILL (it is disposed at the end of the scenario)',
    { inner: name, via: { type: 'string', enum: ['quit', 'term', 'kill'] } },
    async (s, { ctx, st, named, event, tag }) => {
      const lab = named(st.inners, s.inner, 'inner lab');
      event(`${tag} ${s.inner} via ${s.via}`);
      const sd = await lab.shutdown(s.via);
      ctx.checks.equal(`${tag} ${s.inner} via ${s.via} without escalation`, sd.escalations, []);
      ctx.watchGuestPid(undefined);
      // Not disposed here: disposing gives the device back to its driver, and unbinding it from vfio-pci is itself
      // a way pins go (see the README).
    },
  ),
  'adopt-fds': step(
    "a seeded fault: the worker takes duplicates of an inner QEMU's VFIO fds (pidfd_getfd)",
    { worker: name, inner: name },
    async (s, { ctx, st, named, tag }) => {
      const lab = named(st.inners, s.inner, 'inner lab');
      const held = await adoptInnerVfioFds(named(st.workers, s.worker, 'worker'), lab);
      ctx.phase(`${tag} ${s.worker} holds ${held.join(', ')}`);
    },
  ),
  'tce-window': step(
    'names a TCE window as the guest kernel knows it (the PE of a binding or a PCI address; table 0 or 1) for hcall steps; ' +
      "checks that QEMU's view of that liobn agrees",
    {
      binding: opt(name),
      device: opt(pciAddress),
      table: opt({ type: 'integer', min: 0, max: 1 }),
      liobn: opt(hex),
      pageShift: opt({ type: 'integer', min: 12, max: 34 }),
      as: name,
    },
    async (s, { ctx, st, named, tag }) => {
      const hc = await hypercalls(ctx, st.hostile, tag);
      if (!hc) return;
      if (s.liobn) {
        // A window of a PHB with no device the guest could name (PHB 0): as QEMU has it, its page size as given (4 KiB by default).
        const host = (await ctx.ddw.windows([{ id: 'phb0', index: 0 }])).find((x) => BigInt(x.liobn) === BigInt(s.liobn!));
        if (!host) throw new TcelabError(tag, `QEMU has no window with liobn ${s.liobn}`);
        st.tceWindows.set(s.as, {
          liobn: BigInt(s.liobn),
          start: BigInt(host.start),
          size: BigInt(host.size),
          pageShift: s.pageShift ?? 12,
        });
        return;
      }
      const address = s.binding ? named(st.bindings, s.binding, 'binding').address : s.device;
      if (!address) throw new TcelabError(tag, 'names no PE: give "binding" or "device"');
      const pe = await hc.peInfo(address);
      const t = pe.tables.find((x) => x.index === (s.table ?? 0));
      if (!t)
        throw new TcelabError(
          tag,
          `the guest kernel has no table ${s.table ?? 0} for ${address} (it has ${pe.tables.map((x) => x.index).join(', ') || 'none'})`,
        );
      const w: TceWindow = { liobn: t.liobn, start: t.windowStart, size: t.windowSize, pageShift: t.pageShift, pe: address };
      st.tceWindows.set(s.as, w);
      const host = (await ctx.ddw.windows([{ id: 'phb0', index: 0 }])).find((x) => x.liobn === Number(w.liobn));
      ctx.checks.equal(
        `${tag} ${s.as}: QEMU's view of liobn 0x${w.liobn.toString(16)}`,
        host ? { start: BigInt(host.start), size: BigInt(host.size) } : 'no such window',
        { start: w.start, size: w.size },
        `the guest's: ${entryCount(w)} entries of ${1 << w.pageShift} bytes`,
      );
    },
    undefined,
    HOSTILE_MODULE,
  ),
  hcall: step(
    'a raw TCE hypercall from the guest (the tcelab_hcall module): liobn and ioba from a named window (entry: N, last, end = one past) ' +
      'or literal; expect its return code (expectUnderKvm where a KVM host answers otherwise); a refused call must write nothing',
    {
      call: { type: 'string', enum: HCALL_NAMES },
      window: opt(name),
      liobn: opt(hex),
      ioba: opt(hex),
      entry: opt({ type: 'string', pattern: /^(last|end|\d{1,10})$/, patternHint: 'an entry index, "last" or "end" (one past the last)' }),
      byteOffset: opt({ type: 'integer', min: 0, max: 65535 }),
      tce: opt(hex),
      npages: opt({ type: 'integer', min: 0, max: 2 ** 32 }),
      list: opt({
        type: 'object',
        fields: {
          tces: { type: 'integer', min: 0, max: 1024 },
          at: { type: 'string', enum: ['page', 'offset', 'phys'] },
          offset: opt({ type: 'integer', min: 0, max: 8192 }),
          phys: opt(hex),
          // Value i of the list is tce + i·stride (a list of distinct values, as the fuzz writes them).
          stride: opt(hex),
        },
      }),
      expect: hcallExpect,
      // H_GET_TCE: the entry's value when the call succeeds.
      expectTce: opt(hex),
      expectUnderKvm: opt(hcallExpect),
      knownDefect: opt({ type: 'string', enum: KERNEL_DEFECT_IDS }),
      // Not issued where the defect's code answers and this kernel is not known to have its fix (npages 2^32: KVM would
      // write past its table 2^32 times, a hang or corruption of the host rather than an answer).
      notIssuedWithDefect: opt({ type: 'string', enum: KERNEL_DEFECT_IDS }),
      label,
    },
    async (s, { ctx, st, named, tag }) => {
      const hc = await hypercalls(ctx, st.hostile, tag);
      if (!hc) return;
      const unsafe = s.notIssuedWithDefect as KernelDefectId | undefined;
      const unsafeDefect: KernelDefect | undefined = unsafe && KERNEL_DEFECTS[unsafe];
      if (unsafeDefect && handlerOf(ctx) === 'kvm' && !kernelHasFix(unsafeDefect, ctx.kernel)) {
        ctx.checks.notApplicable(
          `${tag} ${s.label ?? s.call}`,
          `not issued: ${ctx.kernel.release} lacks the fix of defect ${unsafeDefect.number}; ` +
            `${unsafeDefect.unsafe ?? 'its KVM would act on entries past the window'}`,
        );
        return;
      }
      if (s.knownDefect && handlerOf(ctx) === 'kvm') expectDefectReports(ctx, s.knownDefect as KernelDefectId);
      const w = s.window ? named(st.tceWindows, s.window, 'TCE window (tce-window)') : undefined;
      const liobn = s.liobn ? BigInt(s.liobn) : w?.liobn;
      if (liobn === undefined) throw new TcelabError(tag, 'names no liobn: give "window" or "liobn"');
      const entry = s.entry === undefined ? 0 : /^\d/.test(s.entry) ? Number(s.entry) : (s.entry as 'last' | 'end');
      const ioba = s.ioba ? BigInt(s.ioba) : w ? iobaOf(w, entry, s.byteOffset) : BigInt(s.byteOffset ?? 0);
      const npages = s.npages ?? 1;
      const stride = BigInt(s.list?.stride ?? '0x0');
      const list =
        s.list &&
        (s.list.at === 'phys'
          ? { at: 'phys' as const, tces: s.list.tces, phys: BigInt(s.list.phys ?? '0x0'), stride }
          : s.list.at === 'offset'
            ? { at: 'offset' as const, tces: s.list.tces, offset: s.list.offset ?? 8, stride }
            : { at: 'page' as const, tces: s.list.tces, stride });
      const request = { call: s.call, liobn, ioba, tce: BigInt(s.tce ?? '0x0'), npages, list };
      const expected = expectedAnswer(ctx, s);
      const guarded = w && s.call !== 'H_GET_TCE' && expected !== 'H_SUCCESS' ? guardedEntries(w, ioba, npages) : [];
      const before = guarded.length ? await readEntries(hc, w!, guarded) : [];
      const res = await issue(hc, request);
      const what = `${s.label ?? s.call}`;
      const written = s.call === 'H_GET_TCE' ? '' : ` tce 0x${request.tce.toString(16)} npages ${npages}`;
      const args = `liobn 0x${liobn.toString(16)} ioba 0x${ioba.toString(16)}${written}`;
      const detail = `${s.call} ${args}; answered by ${handlerOf(ctx) === 'kvm' ? "the KVM host's kernel" : 'QEMU'}`;
      const defectApplies = handlerOf(ctx) === 'kvm';
      recordAnswer(ctx, `${tag} ${what}`, res.name, expected, detail, s.knownDefect as KernelDefectId | undefined, defectApplies);
      if (s.expectTce !== undefined && s.call === 'H_GET_TCE' && res.name === 'H_SUCCESS') {
        const value = `0x${(res.out0 ?? 0n).toString(16)}`;
        const want = `0x${BigInt(s.expectTce).toString(16)}`;
        ctx.checks.record(`${tag} ${what}: the entry's value`, value === want, want, value, detail);
      }
      if (!guarded.length) return;
      const after = await readEntries(hc, w!, guarded);
      recordAnswer(
        ctx,
        `${tag} ${what}: nothing written`,
        after.join(' '),
        before.join(' '),
        `H_GET_TCE of entries ${guarded.join(', ')} before and after`,
        s.knownDefect as KernelDefectId | undefined,
        defectApplies,
      );
    },
    undefined,
    HOSTILE_MODULE,
  ),
  rtas: step(
    "a raw DDW RTAS call from the guest (tcelab_hcall): query / create / remove / reset for a named window's PE (or a window's liobn); " +
      'expect its status by name; a created window is named with "as"',
    {
      service: {
        type: 'string',
        enum: ['ibm,query-pe-dma-window', 'ibm,create-pe-dma-window', 'ibm,remove-pe-dma-window', 'ibm,reset-pe-dma-window'],
      },
      pe: name,
      window: opt(name),
      liobn: opt(hex),
      pageShift: opt({ type: 'integer', min: 0, max: 255 }),
      windowShift: opt({ type: 'integer', min: 0, max: 255 }),
      cfgAddr: opt(hex),
      // A BUID instead of the PE's PHB's (one no PHB has: QEMU answers parameter error).
      buid: opt(hex),
      expect: { type: 'string', enum: RTAS_NAMES },
      // The output words after the status (query: 4, create: 3), checked when the status is the expected one.
      expectOut: opt({ type: 'array', items: hex, maxItems: 7 }),
      as: opt(name),
      label,
    },
    async (s, { ctx, st, named, tag }) => {
      const hc = await hypercalls(ctx, st.hostile, tag);
      if (!hc) return;
      const peWindow = named(st.tceWindows, s.pe, 'TCE window (tce-window) whose PE the call names');
      if (!peWindow.pe) throw new TcelabError(tag, `window ${s.pe} has no PE`);
      const pe = await hc.peInfo(peWindow.pe);
      const [cfg, peHi, peLo] = ddwPeArgs(pe);
      const buid = s.buid === undefined ? undefined : BigInt(s.buid);
      const [hi, lo] = buid === undefined ? [peHi, peLo] : [Number((buid >> 32n) & 0xffffffffn), Number(buid & 0xffffffffn)];
      const peArgs = [s.cfgAddr ? Number(BigInt(s.cfgAddr) & 0xffffffffn) : cfg, hi, lo];
      const liobn = s.liobn ? BigInt(s.liobn) : s.window ? named(st.tceWindows, s.window, 'TCE window').liobn : undefined;
      const call = {
        'ibm,query-pe-dma-window': { args: peArgs, nret: 5 },
        'ibm,create-pe-dma-window': { args: [...peArgs, s.pageShift ?? 16, s.windowShift ?? 30], nret: 4 },
        'ibm,remove-pe-dma-window': { args: [Number(liobn ?? 0n)], nret: 1 },
        'ibm,reset-pe-dma-window': { args: peArgs, nret: 1 },
      }[s.service];
      if (s.service === 'ibm,remove-pe-dma-window' && liobn === undefined)
        throw new TcelabError(tag, 'remove names no window: give "window" or "liobn"');
      const res = await hc.rtas(s.service, call.args, call.nret);
      const what = s.label ?? s.service;
      ctx.checks.record(
        `${tag} ${what}`,
        res.statusName === s.expect,
        s.expect,
        res.statusName,
        `${s.service}(${call.args.map(hexWord).join(', ')}) → status ${res.status} [${res.out.map(hexWord).join(', ')}]`,
      );
      if (s.expectOut && res.statusName === s.expect) {
        const want = s.expectOut.map((w) => hexWord(Number(BigInt(w))));
        const got = res.out.slice(0, want.length).map(hexWord);
        ctx.checks.record(`${tag} ${what}: outputs`, got.join(' ') === want.join(' '), want.join(' '), got.join(' '));
      }
      if (s.as && res.status === 0 && s.service === 'ibm,create-pe-dma-window') {
        const [wLiobn, startHi, startLo] = res.out;
        st.tceWindows.set(s.as, {
          liobn: BigInt(wLiobn!),
          start: (BigInt(startHi!) << 32n) | BigInt(startLo!),
          size: 1n << BigInt(s.windowShift ?? 30),
          pageShift: s.pageShift ?? 16,
          pe: peWindow.pe,
        });
      }
    },
    undefined,
    HOSTILE_MODULE,
  ),
  do: step(
    'runs a procedure written in TypeScript (a built-in scenario) with options; --set on the command line wins',
    { procedure: name, options: opt({ type: 'map', values: { type: 'scalar' } }) },
    async (s, { ctx, procedures }) => {
      const proc = procedures.find((p) => p.name === s.procedure)!;
      await proc.run({ ...ctx, options: { ...(s.options ?? {}), ...ctx.options } });
    },
  ),
};

function hotplugger(st: StepState, tag: string): Hotplugger {
  if (!st.hotplug) throw new TcelabError(tag, 'nothing was hot-plugged in this scenario');
  return st.hotplug;
}

export type StepType = keyof typeof STEPS;
export const STEP_TYPES = Object.keys(STEPS) as StepType[];

/** A step of a scenario file: a discriminated union on "step", each with its own typed fields. */
export type ScenarioStep = {
  [K in StepType]: { step: K } & InferFields<typeof COMMON_STEP_FIELDS> & InferFields<(typeof STEPS)[K]['fields']>;
}[StepType];

/** Fields every step takes besides its own. */
export const COMMON_STEP_FIELDS = {
  timeoutSec: { type: 'integer', min: 1, max: 3600, optional: true },
  // A step whose outcome depends on the guest kernel's page size (e.g. what maps into a 64K-page window):
  // on another page size it is reported as not applicable instead of run.
  onlyIfPageSize: { type: 'integer', min: 4096, max: 65536, optional: true },
} as const;

/** The schema a step of the given type is checked against when its file is loaded. */
export function stepSpec(type: StepType): Spec {
  return { type: 'object', fields: { step: { type: 'string', enum: STEP_TYPES }, ...COMMON_STEP_FIELDS, ...STEPS[type].fields } };
}

export function isStepType(type: unknown): type is StepType {
  return typeof type === 'string' && Object.hasOwn(STEPS, type);
}
