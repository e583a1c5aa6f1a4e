import { createHash } from 'node:crypto';
import { describeCall, type FuzzCall, type ListPlace, U64_MASK } from './fuzz-calls.js';
import { Prng } from './prng.js';
import { MAX_CREATE_ORDER, type ModelOptions, QemuTceModel, SPAPR_PCI_BASE_BUID, type WindowView } from './qemu-tce-model.js';

/**
 * Seeded sequences of TCE hypercalls and DDW RTAS calls, valid and invalid: the same seed and geometry give the same
 * calls. Calls aim at the windows as they are at that point of the sequence (the generator keeps its own fault-free
 * model of QEMU to know them): the first entry, the last, one past, far past, below the start, entries written
 * before; iobas aligned or not; values 0, in RAM with R/W bits, outside RAM, misaligned; npages 0/1/2/… 512/513 and a
 * table's size; INDIRECT lists on the module's page, misaligned, outside RAM; RTAS on the PE under test and on a BUID
 * no PHB has.
 */

export interface GeneratorOptions {
  seed: number;
  model: ModelOptions;
  /** The PHB whose PE the RTAS calls name (the edu's): its two liobns are aimed at and its windows created/removed. */
  pePhbIndex: number;
  /** Another PHB whose default window the hypercalls use (PHB 0); never touched by RTAS, nor its DDW (the guest kernel's). */
  otherPhbIndex: number;
}

const OP_WEIGHTS = {
  H_GET_TCE: 26,
  H_PUT_TCE: 24,
  H_STUFF_TCE: 16,
  H_PUT_TCE_INDIRECT: 22,
  query: 3,
  create: 4,
  remove: 3.5,
  reset: 1.5,
} as const;

const TARGET_WEIGHTS = { other: 30, peDefault: 28, peDdw: 20, unknown: 8 } as const;

/**
 * Liobns that name no table: no PHB 0xff or 2, upper bits set (QEMU's lookup refuses any), the all-ones word, 0.
 * None is a VIO device's (those start at 0x71000000): removing a VIO window aborts QEMU (a finding of its own).
 */
const UNKNOWN_LIOBNS = [0x8000ff00n, 0x80000201n, 0x1_80000100n, 0xffffffffn, 0n];
const UNKNOWN_REMOVE_LIOBNS = [0x8000ff00, 0x80000201, 0xffffffff];

/** Where in a window an ioba points. */
const ZONE_WEIGHTS = { first: 8, low: 18, random: 10, nearEnd: 14, last: 12, past: 10, farPast: 5, below: 4, written: 19 } as const;
const GET_ZONE_WEIGHTS = { ...ZONE_WEIGHTS, written: 45 } as const;
type Zone = keyof typeof ZONE_WEIGHTS;

const VALUE_WEIGHTS = { zero: 15, ramRw: 45, outsideRam: 15, misalignedGpa: 10, random: 10, allOnes: 5 } as const;
/** A guest physical address no RAM or device holds (256 GiB; the PHBs' MMIO windows start at 32 TiB). */
export const OUTSIDE_RAM = 0x40_0000_0000n;

const STUFF_NPAGES = { zero: 6, one: 20, two: 14, upTo600: 30, n512: 5, n513: 5, table: 5, tablePlusOne: 4, n2p32: 4 } as const;
const INDIRECT_NPAGES = { zero: 5, one: 20, two: 14, upTo512: 40, n512: 6, n513: 6, upTo600: 6, n2p32: 3 } as const;
const LIST_PLACES = { page: 72, offset: 14, phys: 14 } as const;
/** Offsets into the module's buffer: misaligned ones, and 4096 / 8192 (aligned: a valid list). */
const LIST_OFFSETS = [8, 16, 2048, 4088, 4096, 8192];
const STRIDES = { zero: 30, page: 40, bigPage: 10, random: 20 } as const;

const VALID_PAGE_SHIFTS = [12, 16, 21, 24];
const INVALID_PAGE_SHIFTS = [0, 11, 13, 20, 22, 25, 34, 40, 63];
/** A BUID no PHB of the lab has (index 7). */
export const UNKNOWN_BUID = SPAPR_PCI_BASE_BUID + 7n;

/** A DDW the generator has not seen yet: aimed at as QEMU would place one of 64 KiB pages while the default exists. */
const GUESSED_DDW: Omit<WindowView, 'liobn'> = { enabled: false, busOffset: 1n << 59n, pageShift: 16, nbTable: 256n };

export class CallGenerator {
  private readonly rng: Prng;
  private readonly model: QemuTceModel;
  /** Each window as last seen enabled: a removed window is still aimed at where it was. */
  private readonly seen = new Map<bigint, WindowView>();
  /** Entries written lately (liobn, index): H_GET_TCE reads them back. */
  private readonly written: Array<{ liobn: bigint; index: bigint }> = [];
  private readonly liobns: { other: bigint; peDefault: bigint; peDdw: bigint };
  private readonly peBuid: bigint;
  private readonly ramPages: number;

  constructor(readonly opts: GeneratorOptions) {
    this.rng = new Prng(opts.seed);
    // The generator's own model never has faults: a seeded fault of the judge's model must not change the sequence.
    this.model = new QemuTceModel({ ...opts.model, faults: new Set() });
    // A PHB's liobns are SPAPR_PCI_LIOBN(index, 0) and (index, 1): the default window's, then the dynamic one's.
    const ofPhb = (index: number) => this.model.windows().filter((w) => ((w.liobn >> 8n) & 0xffn) === BigInt(index));
    const pe = ofPhb(opts.pePhbIndex);
    const other = ofPhb(opts.otherPhbIndex);
    this.liobns = { other: other[0]!.liobn, peDefault: pe[0]!.liobn, peDdw: pe[1]!.liobn };
    this.peBuid = this.model.buidOf(opts.pePhbIndex);
    this.ramPages = Number(opts.model.ramBytes >> 12n);
    this.look();
  }

  /** The next call (and the generator's model moves past it). */
  next(): FuzzCall {
    const call = this.make(this.rng.weighted(OP_WEIGHTS));
    this.model.apply(call, this.peBuid);
    this.remember(call);
    this.look();
    return call;
  }

  private make(op: keyof typeof OP_WEIGHTS): FuzzCall {
    const r = this.rng;
    switch (op) {
      case 'H_GET_TCE': {
        const { liobn, ioba } = this.target(GET_ZONE_WEIGHTS);
        return { op, liobn, ioba };
      }
      case 'H_PUT_TCE': {
        const { liobn, ioba } = this.target(ZONE_WEIGHTS);
        return { op, liobn, ioba, tce: this.value() };
      }
      case 'H_STUFF_TCE': {
        const { liobn, ioba, window } = this.target(ZONE_WEIGHTS);
        return { op, liobn, ioba, tce: this.value(), npages: this.stuffNpages(window) };
      }
      case 'H_PUT_TCE_INDIRECT': {
        const { liobn, ioba } = this.target(ZONE_WEIGHTS);
        const npages = this.indirectNpages();
        const list = this.listPlace();
        const full = Number(npages < 512n ? npages : 512n);
        const tces = list.at === 'phys' ? 0 : r.chance(0.8) ? full : r.below(full + 1);
        return { op, liobn, ioba, npages, list, tces, tce: this.value(), stride: this.stride() };
      }
      case 'query':
      case 'reset':
        return { op, buid: this.buid(), ...this.cfgAddr() };
      case 'create': {
        const valid = r.chance(0.88);
        const pageShift = valid ? r.pick(VALID_PAGE_SHIFTS) : r.pick(INVALID_PAGE_SHIFTS);
        // ws - ps stays within MAX_CREATE_ORDER (see there: beyond it QEMU allocates gigabytes or later aborts).
        const below = r.chance(0.1) && pageShift > 0;
        const windowShift = below
          ? pageShift - 1 - r.below(Math.min(pageShift, 4))
          : Math.min(63, pageShift + r.below(MAX_CREATE_ORDER + 1));
        return { op, buid: this.buid(), ...this.cfgAddr(), pageShift, windowShift };
      }
      case 'remove': {
        const which = r.weighted({ ddw: 55, def: 25, unknown: 20 });
        const liobn = which === 'ddw' ? this.liobns.peDdw : which === 'def' ? this.liobns.peDefault : BigInt(r.pick(UNKNOWN_REMOVE_LIOBNS));
        return { op, liobn: Number(liobn) };
      }
    }
  }

  /** A liobn and an ioba in (or around) one of its windows. */
  private target(zones: Readonly<Record<Zone, number>>): { liobn: bigint; ioba: bigint; window?: WindowView } {
    const r = this.rng;
    const which = r.weighted(TARGET_WEIGHTS);
    if (which === 'unknown') return { liobn: r.pick(UNKNOWN_LIOBNS), ioba: BigInt(r.below(0x40000)) << 12n };
    const liobn = this.liobns[which];
    const w = this.seen.get(liobn) ?? { liobn, ...GUESSED_DDW };
    const page = 1n << BigInt(w.pageShift);
    const n = w.nbTable;
    const upTo = (k: bigint) => BigInt(r.below(Number(k < 1n ? 1n : k > 0xffffffffn ? 0xffffffffn : k)));
    let zone = r.weighted(zones);
    const mine = this.written.filter((x) => x.liobn === liobn);
    if (zone === 'written' && mine.length === 0) zone = 'low';
    const index = {
      first: () => 0n,
      low: () => upTo(n < 1024n ? n : 1024n),
      random: () => upTo(n),
      nearEnd: () => n - 1n - upTo(n < 600n ? n : 600n),
      last: () => n - 1n,
      past: () => n,
      farPast: () => n + 1n + upTo(1n << 20n),
      below: () => -1n,
      written: () => r.pick(mine).index,
    }[zone]();
    let ioba = (w.busOffset + index * page) & U64_MASK;
    if (r.chance(0.25)) ioba = (ioba + 1n + upTo(page - 1n)) & U64_MASK;
    return { liobn, ioba, window: w };
  }

  private value(): bigint {
    const r = this.rng;
    const bits = () => BigInt(r.below(4));
    switch (r.weighted(VALUE_WEIGHTS)) {
      case 'zero':
        return 0n;
      case 'ramRw':
        return (BigInt(r.below(this.ramPages)) << 12n) | bits();
      case 'outsideRam':
        return OUTSIDE_RAM + (BigInt(r.below(1 << 20)) << 12n) + bits();
      case 'misalignedGpa':
        return (BigInt(r.below(this.ramPages)) << 12n) + BigInt(r.below(4096));
      case 'random':
        return r.u64();
      case 'allOnes':
        return U64_MASK;
    }
  }

  private stuffNpages(w: WindowView | undefined): bigint {
    const r = this.rng;
    const n = w?.nbTable ?? 256n;
    return {
      zero: () => 0n,
      one: () => 1n,
      two: () => 2n,
      upTo600: () => BigInt(r.between(3, 600)),
      n512: () => 512n,
      n513: () => 513n,
      table: () => n,
      tablePlusOne: () => n + 1n,
      n2p32: () => 1n << 32n,
    }[r.weighted(STUFF_NPAGES)]();
  }

  private indirectNpages(): bigint {
    const r = this.rng;
    return {
      zero: () => 0n,
      one: () => 1n,
      two: () => 2n,
      upTo512: () => BigInt(r.between(3, 512)),
      n512: () => 512n,
      n513: () => 513n,
      upTo600: () => BigInt(r.between(3, 600)),
      n2p32: () => 1n << 32n,
    }[r.weighted(INDIRECT_NPAGES)]();
  }

  private listPlace(): ListPlace {
    const r = this.rng;
    switch (r.weighted(LIST_PLACES)) {
      case 'page':
        return { at: 'page' };
      case 'offset':
        return { at: 'offset', offset: r.pick(LIST_OFFSETS) };
      case 'phys':
        return { at: 'phys', phys: OUTSIDE_RAM + (BigInt(r.below(16)) << 12n) + (r.chance(0.3) ? 8n : 0n) };
    }
  }

  private stride(): bigint {
    const r = this.rng;
    return { zero: () => 0n, page: () => 0x1000n, bigPage: () => 0x10000n, random: () => r.u64() }[r.weighted(STRIDES)]();
  }

  private buid(): 'pe' | bigint {
    return this.rng.chance(0.9) ? 'pe' : UNKNOWN_BUID;
  }

  /** The config address: QEMU only traces it; now and then another one. */
  private cfgAddr(): { cfgAddr?: number } {
    return this.rng.chance(0.15) ? { cfgAddr: this.rng.u32() } : {};
  }

  /** Keeps the entries a write aimed at (at most 64), for reads. */
  private remember(c: FuzzCall): void {
    if (c.op !== 'H_PUT_TCE' && c.op !== 'H_STUFF_TCE' && c.op !== 'H_PUT_TCE_INDIRECT') return;
    const w = this.seen.get(c.liobn);
    if (!w?.enabled) return;
    const index = (((c.ioba - w.busOffset) & U64_MASK) >> BigInt(w.pageShift)) + BigInt(this.rng.below(2));
    if (index >= w.nbTable) return;
    this.written.push({ liobn: c.liobn, index });
    if (this.written.length > 64) this.written.shift();
  }

  private look(): void {
    for (const w of this.model.windows()) {
      const prev = this.seen.get(w.liobn);
      if (w.enabled) this.seen.set(w.liobn, w);
      else if (prev) this.seen.set(w.liobn, { ...prev, enabled: false });
    }
  }
}

/** The first `count` calls of a seed. */
export function generateCalls(opts: GeneratorOptions, count: number): FuzzCall[] {
  const g = new CallGenerator(opts);
  return Array.from({ length: count }, () => g.next());
}

/** A sequence's fingerprint: sha256 over its calls' text, one per line (the summary's, to show a replay is the same). */
export function sequenceHash(calls: readonly FuzzCall[]): string {
  const h = createHash('sha256');
  for (const c of calls) h.update(`${describeCall(c)}\n`);
  return h.digest('hex');
}
