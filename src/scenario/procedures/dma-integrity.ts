import type { PatternCheck } from '../../agent/types.js';
import type { VfioWorker } from '../../agent/agent-client.js';
import { findGuestDevice } from '../guest-vfio.js';
import { TcelabError } from '../../util/errors.js';
import type { ScenarioContext, ScenarioDefinition } from '../scenario.js';
import type { CheckRecorder } from '../checks.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024n * 1024n * 1024n;

/** edu's default DMA mask: without `dma_mask` in its profile it silently clamps every address to its low 28 bits. */
const EDU_DEFAULT_MASK = 0xfffffffn;

/**
 * Bytes per copy: edu's 4 KiB buffer less 64. QEMU 7.2's edu refuses a copy that ends at its buffer's end as out of
 * bounds and aborts ("hardware error: EDU: DMA range 0x0000000000040000-0x0000000000040fff out of bounds
 * (0x0000000000040000-0x0000000000040fff)!", measured with 7.2.22: an off-by-one), 10.0 takes it; a copy that leaves
 * the last 64 bytes alone runs on both and still spans a TCE boundary where the offsets ask for one.
 */
export const COPY = 4096 - 64;

/** The id register of QEMU's edu (version 1.0, "ed"). */
const EDU_ID = '0x010000ed';

/** What a copy of `size` bytes must bring: the pattern of its seed, every byte. */
function describeCheck(c: PatternCheck): string {
  return c.equal
    ? 'intact'
    : `${c.mismatches} of ${c.size} bytes differ (first at +0x${c.firstMismatch.toString(16)}), ${c.zeroBytes} zero`;
}

/** One mapping the scenario copies through: a region of the worker mapped at an IOVA. */
interface Mapped {
  region: number;
  iova: bigint;
  size: number;
}

/**
 * The runs' data path, end to end: the device (QEMU's edu, bound to vfio-pci in the guest) copies data with its own
 * DMA engine through every kind of window — the default 32-bit one, a 64K-page and a 2M-page DDW — at offsets that
 * exercise one TCE, its middle, its last 4 KiB and the seam between two; read-only and write-only mappings hold;
 * after UNMAP the device can neither write nor read the page, and a valid copy still works; a DDW address never
 * aliases into the 32-bit window (edu's 28-bit default DMA mask would do that silently); the completion MSI comes
 * exactly once per copy that asks for it and never otherwise. Nothing here is bookkeeping: each verdict is bytes
 * the device moved, compared with what was written.
 */
export const dmaIntegrity: ScenarioDefinition = {
  name: 'dma-integrity',
  description: 'the device copies data through every window and offset; permissions, UNMAP, aliasing and MSI hold',
  defaultProfile: 'emulated',
  seedableFaults: {
    'map-elsewhere': "the 32-bit window's source is mapped 128 KiB past the IOVA the device is given",
    'skip-unmap': 'the UNMAP before the unreachable copies is skipped: the page stays reachable',
    'no-dma-mask': "the device keeps edu's 28-bit default DMA mask (no dma_mask in the profile): DDW addresses alias",
    'perm-swapped': 'the read-only mapping is mapped write-only and the write-only one read-only',
    'irq-swapped': 'the copy that asks for the completion interrupt does not, and the one that does not, does',
    'skip-config-restore': "a restored lab does not write back edu's PCI configuration (QEMU migrates none of it): its BAR is unassigned",
  },
  adjustProfile(profile, options) {
    const seeded = String(options.seedFaults ?? '').split(',');
    let out = profile;
    if (seeded.includes('no-dma-mask')) {
      const devices = out.devices.map((d) => {
        if (d.driver !== 'edu') return d;
        const { dma_mask: _mask, ...props } = d.props;
        return { ...d, props };
      });
      out = { ...out, devices };
    }
    return out;
  },
  async run(ctx) {
    const { agent } = ctx;
    const dev = await findGuestDevice(agent, ctx.profile);
    // A BAR that QEMU has unassigned (a restored edu whose configuration was not written back) is not touched: the
    // guest's first access to it machine-checks the guest (QEMU 10.0.13), and nothing else could be judged.
    const bar0 = await unassignedBar0(ctx, dev.address);
    if (bar0) {
      ctx.checks.record(BAR_REACHABLE, false, EDU_ID, `not read: ${bar0}`, labStartDetail(ctx));
      return;
    }
    const bound = await agent.bind(dev.address);
    const worker = await agent.startWorker();
    await worker.open(bound.group);
    const opened = await worker.deviceOpen(dev.address);
    // The copies are edu's: another device would be driven with registers it does not have.
    if (opened.id !== EDU_ID)
      throw new TcelabError(
        'dma-integrity',
        `${dev.address} is not QEMU's edu (its id register reads ${opened.id}, edu's is ${EDU_ID})`,
        "run it on a profile whose first device is edu, or one passed through from an edu (kvm-lab-host's)",
      );
    ctx.checks.record(BAR_REACHABLE, true, EDU_ID, opened.id, labStartDetail(ctx));
    const order = opened.swapped ? 'byte-swapped (a big-endian device)' : "in the guest's byte order";
    ctx.progress.info(`edu at ${dev.address}: BAR0 ${opened.bar0Size} bytes, registers ${order}`);
    await worker.msiEnable();
    const copies = new Copies(ctx, worker);

    // The default 32-bit window: ordinary memory, 4 KiB TCEs.
    const src = await copies.mapRegion(64 * KiB, false, ctx.seeded('map-elsewhere') ? 0x20000n : 0n);
    const srcAt = { ...src, iova: 0n };
    const dst = await copies.mapRegion(64 * KiB, false, 0x10000n);
    for (const [label, offset] of [
      ['at 0', 0],
      ['mid-page', 0x800],
    ] as const)
      await copies.roundTrip(`32-bit window ${label}`, srcAt, dst, offset, COPY);

    await permissions(ctx, copies, srcAt, dst);
    await unreachableAfterUnmap(ctx, copies, srcAt, dst);
    await completionInterrupt(ctx, copies, srcAt, dst);
    await copies.unmapAll();

    for (const w of DDW_CASES) await throughWindow(ctx, copies, w);
    ctx.progress.info(`dma-integrity: ${copies.made} copies by the device, ${copies.totalMs} ms of DMA in all`);
    await worker.deviceClose();
    await copies.freeAll();
    await worker.stop('TERM');
    await agent.unbind(dev.address);
  },
};

/** The check that the device answers at all: a restored lab's edu must have its BAR back (lab/device-config.ts). */
const BAR_REACHABLE = "edu's BAR0 is reachable: its id register reads edu's id";

/** How the lab started, for the check's detail: a restored lab wrote edu's configuration back, or did not. */
const labStartDetail = (ctx: ScenarioContext): string => {
  const start = ctx.lab.start;
  if (start.how === 'cold') return 'booted cold';
  if (start.configsNotRestored) return `restored; configuration not written back (${start.configsNotRestored})`;
  const written = start.configsRestored?.map((c) => `${c.id}: ${c.registers} registers in ${c.ms} ms`).join(', ');
  return `restored; configuration written back${written ? ` (${written})` : ''}`;
};

/**
 * Why BAR0 cannot be read, if it cannot: its address in the device's configuration space (QEMU's answer, through
 * RTAS) is 0, which QEMU treats as unassigned — a restored edu whose configuration was not written back.
 */
async function unassignedBar0(ctx: ScenarioContext, address: string): Promise<string | undefined> {
  const bar0 = (await ctx.agent.pciConfigRead(address, 0x10, 4)).readUInt32LE(0);
  if (bar0 & ~0xf) return undefined;
  return `BAR0 is unassigned in ${address}'s configuration space (reads 0x${bar0.toString(16).padStart(8, '0')}): an access would machine-check the guest`;
}

/**
 * The DDW cases, one table entry each: hugetlb memory (ordinary 4 KiB pages cannot back larger TCEs), a region big
 * enough for the seam between two TCEs, the offsets that exercise one TCE, its middle, its last 4 KiB and that seam.
 */
const DDW_CASES: Array<{
  label: string;
  pageShift: number;
  regionBytes: number;
  offsets: Array<[string, number]>;
  aliasSentinel: boolean;
}> = [
  {
    label: '64K-page DDW',
    pageShift: 16,
    regionBytes: 2 * MiB,
    offsets: [
      ['at 0', 0],
      ['mid-page', 0x8000],
      ['last 4 KiB of a TCE', 0xf000],
      ['across two TCEs', 0xf800],
    ],
    aliasSentinel: true,
  },
  {
    label: '2M-page DDW',
    pageShift: 21,
    regionBytes: 4 * MiB,
    offsets: [
      ['at 0', 0],
      ['at 1 MiB', MiB],
      ['last 4 KiB of a TCE', 2 * MiB - 4096],
      ['across two TCEs', 2 * MiB - 2048],
    ],
    aliasSentinel: false,
  },
];

/**
 * One DDW of 1 GiB: a source and a destination mapped at its start, the copies at each offset, and (for the first)
 * a sentinel where edu's default mask would put the destination: the same low 28 bits in the 32-bit window.
 */
async function throughWindow(ctx: ScenarioContext, copies: Copies, w: (typeof DDW_CASES)[number]): Promise<void> {
  const worker = copies.worker;
  const created = await worker.createWindow(w.pageShift, GiB);
  const start = BigInt(created.startAddr);
  const src = await copies.mapRegion(w.regionBytes, true, start);
  const dst = await copies.mapRegion(w.regionBytes, true, start + BigInt(w.regionBytes));
  const alias = w.aliasSentinel ? await copies.mapRegion(64 * KiB, false, dst.iova & EDU_DEFAULT_MASK) : undefined;
  if (alias) await worker.fill(alias.region, { size: alias.size }, 9999);
  for (const [label, offset] of w.offsets) await copies.roundTrip(`${w.label} ${label}`, src, dst, offset, COPY);
  if (alias) {
    const untouched = await worker.check(alias.region, { size: alias.size }, 9999);
    ctx.checks.record(
      "no alias: the 32-bit window at the DDW address's low 28 bits is untouched",
      untouched.equal,
      'unchanged',
      describeCheck(untouched),
      `sentinel at IOVA 0x${alias.iova.toString(16)} (0x${dst.iova.toString(16)} & 0x${EDU_DEFAULT_MASK.toString(16)})`,
    );
  }
  await copies.unmapAll();
  await worker.removeWindow(created.startAddr);
}

/** Read-only and write-only mappings, as the device sees them. */
async function permissions(ctx: ScenarioContext, copies: Copies, src: Mapped, dst: Mapped): Promise<void> {
  const { checks } = ctx;
  const swapped = ctx.seeded('perm-swapped');
  const ro = await copies.mapRegion(64 * KiB, false, 0x40000n, swapped ? 'write' : 'read');
  const wo = await copies.mapRegion(64 * KiB, false, 0x50000n, swapped ? 'read' : 'write');
  // Read-only: the device reads it; a write to it is dropped.
  await copies.roundTrip('read-only mapping: the device reads it', ro, dst, 0, COPY);
  const kept = await copies.deviceWrites(src, ro, 7001, true);
  checks.record('read-only mapping: the device cannot write it', kept.equal, 'unchanged', describeCheck(kept));
  // Write-only: the device writes it; a read of it gives zeros.
  const written = await copies.deviceWrites(src, wo, 7002, false);
  checks.record('write-only mapping: the device writes it', written.equal, 'intact', describeCheck(written));
  recordReadsZeros(
    checks,
    'write-only mapping: the device cannot read it (reads zeros)',
    await copies.deviceReads(wo, dst, 7003),
    'the pattern arrived',
  );
}

/** After UNMAP the page is out of the device's reach both ways, and the next valid copy still works. */
async function unreachableAfterUnmap(ctx: ScenarioContext, copies: Copies, src: Mapped, dst: Mapped): Promise<void> {
  const { checks } = ctx;
  const gone = await copies.mapRegion(64 * KiB, false, 0x60000n);
  if (!ctx.seeded('skip-unmap')) await copies.unmap(gone);
  const kept = await copies.deviceWrites(src, gone, 8001, true);
  checks.record('after UNMAP the device cannot write the page (sentinel unchanged)', kept.equal, 'unchanged', describeCheck(kept));
  const read = await copies.deviceReads(gone, dst, 8003);
  recordReadsZeros(checks, 'after UNMAP the device cannot read the page (reads zeros)', read, 'the pattern of the unmapped page arrived');
  await copies.roundTrip('after the unreachable copies, a valid copy', src, dst, 0, COPY);
}

/** A read the device must not have been able to make: every byte it brought back is zero (`leaked`: what it says if not). */
function recordReadsZeros(checks: CheckRecorder, name: string, read: PatternCheck, leaked: string): void {
  checks.record(
    name,
    read.zeroBytes === read.size,
    `all ${COPY} bytes zero`,
    read.equal ? leaked : `${read.zeroBytes} of ${read.size} bytes zero`,
  );
}

/** The completion MSI: exactly once for a copy that asks for it, never for one that does not. */
async function completionInterrupt(ctx: ScenarioContext, copies: Copies, src: Mapped, _dst: Mapped): Promise<void> {
  const swapped = ctx.seeded('irq-swapped');
  const asked = await copies.dma('to-device', src.iova, COPY, !swapped);
  ctx.checks.equal(
    'the completion interrupt (MSI) arrives exactly once for a copy that asks for it',
    asked.irqs,
    1,
    `status ${asked.irqStatus}`,
  );
  const unasked = await copies.dma('to-device', src.iova, COPY, swapped);
  ctx.checks.equal('no interrupt for a copy that does not ask for one', unasked.irqs, 0, `status ${unasked.irqStatus}`);
}

/** The worker's copies, their mappings and their time. */
class Copies {
  made = 0;
  totalMs = 0;
  private mapped: Mapped[] = [];
  private regions: number[] = [];

  constructor(
    private readonly ctx: ScenarioContext,
    readonly worker: VfioWorker,
  ) {}

  /** A new region of `size` (hugetlb or not), registered and mapped at `iova` with `perm`. */
  async mapRegion(size: number, hugetlb: boolean, iova: bigint, perm: 'rw' | 'read' | 'write' = 'rw'): Promise<Mapped> {
    const r = await this.worker.alloc(size, hugetlb);
    this.regions.push(r.region);
    await this.worker.register(r.region);
    await this.worker.map(r.region, iova, { size, perm });
    const m = { region: r.region, iova, size };
    this.mapped.push(m);
    return m;
  }

  async unmap(m: Mapped): Promise<void> {
    await this.worker.unmap(m.iova, m.size);
    this.mapped = this.mapped.filter((x) => x !== m);
  }

  async unmapAll(): Promise<void> {
    for (const m of [...this.mapped]) await this.unmap(m);
  }

  async freeAll(): Promise<void> {
    for (const r of this.regions) {
      await this.worker.unregister(r);
      await this.worker.free(r);
    }
    this.regions = [];
  }

  async dma(direction: 'to-device' | 'from-device', iova: bigint, size: number, irq = false) {
    const c = await this.worker.dma({ direction, iova, size, irq });
    this.made++;
    this.totalMs += c.durationMs;
    return c;
  }

  /**
   * The device loads 4 KiB of `seed`'s pattern from `from`, then writes it into `target`, which held a sentinel (its
   * own pattern) before: the check of what `target` holds against the sentinel (`expectUnchanged`) or the data.
   */
  async deviceWrites(from: Mapped, target: Mapped, seed: number, expectUnchanged: boolean): Promise<PatternCheck> {
    await this.worker.fill(from.region, { size: COPY }, seed);
    await this.dma('to-device', from.iova, COPY);
    await this.worker.fill(target.region, { size: COPY }, seed + 1);
    await this.dma('from-device', target.iova, COPY);
    return this.worker.check(target.region, { size: COPY }, expectUnchanged ? seed + 1 : seed);
  }

  /** The device reads 4 KiB of `target` (which holds `seed`'s pattern) and writes what it got into `into`: its check. */
  async deviceReads(target: Mapped, into: Mapped, seed: number): Promise<PatternCheck> {
    await this.worker.fill(target.region, { size: COPY }, seed);
    await this.dma('to-device', target.iova, COPY);
    await this.dma('from-device', into.iova, COPY);
    return this.worker.check(into.region, { size: COPY }, seed);
  }

  /**
   * RAM → device → RAM: `size` bytes of a seed's pattern at `offset` of the source go through the device's buffer
   * to the same offset of the destination, which held a sentinel. The check is the destination's bytes.
   */
  async roundTrip(label: string, src: Mapped, dst: Mapped, offset: number, size: number): Promise<void> {
    const seed = this.made + 1;
    await this.worker.fill(src.region, { offset, size }, seed);
    await this.worker.fill(dst.region, { offset, size }, seed + 5000);
    const t0 = Date.now();
    const into = await this.dma('to-device', src.iova + BigInt(offset), size);
    const out = await this.dma('from-device', dst.iova + BigInt(offset), size);
    this.ctx.timings.push({ step: `${label}: RAM → device → RAM`, ms: Date.now() - t0 });
    const got = await this.worker.check(dst.region, { offset, size }, seed);
    const path = `IOVA 0x${(src.iova + BigInt(offset)).toString(16)} → edu → 0x${(dst.iova + BigInt(offset)).toString(16)}`;
    const detail = `${path}, ${size} bytes; DMA ${into.durationMs} + ${out.durationMs} ms`;
    this.ctx.checks.record(`${label}: the copy arrives intact`, got.equal, 'intact', describeCheck(got), detail);
  }
}
