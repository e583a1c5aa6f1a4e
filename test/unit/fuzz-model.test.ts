import { describe, expect, it } from 'vitest';
import { CallGenerator, generateCalls, sequenceHash, type GeneratorOptions } from '../../src/fuzz/call-generator.js';
import { answersAgree, describeCall, type FuzzCall } from '../../src/fuzz/fuzz-calls.js';
import { fuzzScenarioFile } from '../../src/fuzz/fuzz-scenario.js';
import { Prng } from '../../src/fuzz/prng.js';
import { defaultPhb, MAX_CREATE_ORDER, type ModelOptions, ModelRefusal, QemuTceModel } from '../../src/fuzz/qemu-tce-model.js';
import { shrinkSequence } from '../../src/fuzz/shrink.js';
import { parseScenarioFile } from '../../src/scenario/data/scenario-file.js';

/** The emulated lab as the model has it: PHB 0 (the machine's) and the edu's PHB 1, 1 GiB of RAM. */
const LAB: ModelOptions = { phbs: [defaultPhb(0), defaultPhb(1)], ramBytes: 1n << 30n, foreignLiobns: [0x80000001n] };
const PE_BUID = 0x800000020000001n;
const PHB0 = 0x80000000n;
const EDU = 0x80000100n;
const EDU_DDW = 0x80000101n;
const LAST = 0x3ffff000n; // the last 4 KiB entry of a 1 GiB window
const PAST = 0x40000000n;

function model(faults: string[] = []): QemuTceModel {
  return new QemuTceModel({ ...LAB, faults: new Set(faults) as ModelOptions['faults'] });
}
const put = (liobn: bigint, ioba: bigint, tce: bigint): FuzzCall => ({ op: 'H_PUT_TCE', liobn, ioba, tce });
const get = (liobn: bigint, ioba: bigint): FuzzCall => ({ op: 'H_GET_TCE', liobn, ioba });
const stuff = (liobn: bigint, ioba: bigint, tce: bigint, npages: bigint): FuzzCall => ({ op: 'H_STUFF_TCE', liobn, ioba, tce, npages });
const indirect = (
  liobn: bigint,
  ioba: bigint,
  npages: bigint,
  more: Partial<Extract<FuzzCall, { op: 'H_PUT_TCE_INDIRECT' }>> = {},
): FuzzCall => ({
  op: 'H_PUT_TCE_INDIRECT',
  liobn,
  ioba,
  npages,
  list: { at: 'page' },
  tces: Number(npages > 512n ? 512n : npages),
  tce: 0x1003n,
  stride: 0x1000n,
  ...more,
});

describe("the model of QEMU 10.0's TCE hypercalls", () => {
  it('H_GET_TCE / H_PUT_TCE: unknown liobns and upper bits refused, the ioba masked to its page, one past refused', () => {
    const m = model();
    expect(m.apply(get(0x8000ff00n, 0n), PE_BUID)).toEqual({ rc: -4 });
    expect(m.apply(put(0x1_80000000n, 0n, 3n), PE_BUID)).toEqual({ rc: -4 });
    expect(m.apply(get(PHB0, LAST), PE_BUID)).toEqual({ rc: 0, tce: 0n });
    expect(m.apply(put(PHB0, LAST + 8n, 0x1003n), PE_BUID)).toEqual({ rc: 0 });
    expect(m.apply(get(PHB0, LAST + 0xff8n), PE_BUID)).toEqual({ rc: 0, tce: 0x1003n });
    expect(m.apply(put(PHB0, PAST, 0x2003n), PE_BUID)).toEqual({ rc: -4 });
    expect(m.apply(get(PHB0, PAST), PE_BUID)).toEqual({ rc: -4 });
    // Any value is stored as given: outside RAM, misaligned, all ones.
    expect(m.apply(put(EDU, 0n, (1n << 64n) - 1n), PE_BUID)).toEqual({ rc: 0 });
    expect(m.apply(get(EDU, 0x10n), PE_BUID)).toEqual({ rc: 0, tce: (1n << 64n) - 1n });
    // A window that does not exist (the edu's DDW before any create) is found and refuses everything.
    expect(m.apply(get(EDU_DDW, 1n << 59n), PE_BUID)).toEqual({ rc: -4 });
  });

  it('H_STUFF_TCE: ret starts H_PARAMETER (npages 0 refused), npages > nb_table refused first, a partial write before the refusal', () => {
    const m = model();
    expect(m.apply(stuff(PHB0, 0n, 0x3n, 0n), PE_BUID)).toEqual({ rc: -4 });
    expect(m.apply(stuff(PHB0, 0n, 0x3n, 262145n), PE_BUID)).toEqual({ rc: -4 });
    expect(m.apply(get(PHB0, 0n), PE_BUID)).toEqual({ rc: 0, tce: 0n });
    expect(m.apply(stuff(PHB0, LAST, 0x7003n, 2n), PE_BUID)).toEqual({ rc: -4 });
    expect(m.apply(get(PHB0, LAST), PE_BUID)).toEqual({ rc: 0, tce: 0x7003n });
    expect(m.apply(stuff(PHB0, 0x1000n, 0x3n, 3n), PE_BUID)).toEqual({ rc: 0 });
    expect([0n, 0x1000n, 0x3000n, 0x4000n].map((i) => m.apply(get(PHB0, i), PE_BUID))).toEqual([
      { rc: 0, tce: 0n },
      { rc: 0, tce: 3n },
      { rc: 0, tce: 3n },
      { rc: 0, tce: 0n },
    ]);
    // The whole table at once (the fuzz's clear), then a write after it.
    expect(m.apply(stuff(PHB0, 0n, 0x5n, 262144n), PE_BUID)).toEqual({ rc: 0 });
    expect(m.apply(put(PHB0, 0n, 0n), PE_BUID)).toEqual({ rc: 0 });
    expect([0n, LAST].map((i) => m.apply(get(PHB0, i), PE_BUID))).toEqual([
      { rc: 0, tce: 0n },
      { rc: 0, tce: 5n },
    ]);
  });

  it('many stuffs and single writes over each other: the newest write of an entry wins', () => {
    const m = model();
    const at = (i: bigint) => i << 12n;
    expect(m.apply(stuff(EDU, at(0n), 0xan, 100n), PE_BUID)).toEqual({ rc: 0 });
    expect(m.apply(put(EDU, at(50n), 0xbn), PE_BUID)).toEqual({ rc: 0 });
    expect(m.apply(put(EDU, at(20n), 0xdn), PE_BUID)).toEqual({ rc: 0 });
    expect(m.apply(stuff(EDU, at(40n), 0xcn, 80n), PE_BUID)).toEqual({ rc: 0 });
    expect(m.apply(put(EDU, at(60n), 0xen), PE_BUID)).toEqual({ rc: 0 });
    expect([0n, 20n, 39n, 40n, 50n, 60n, 119n, 120n].map((i) => (m.apply(get(EDU, at(i)), PE_BUID) as { tce: bigint }).tce)).toEqual([
      0xan,
      0xdn,
      0xan,
      0xcn,
      0xcn,
      0xen,
      0xcn,
      0n,
    ]);
    expect(m.apply({ op: 'reset', buid: 'pe' }, PE_BUID)).toEqual({ status: 0 });
    expect(m.apply(get(EDU, at(60n)), PE_BUID)).toEqual({ rc: 0, tce: 0n });
  });

  it('H_PUT_TCE_INDIRECT: npages > 512 and a misaligned list refused, npages 0 refused, partial writes, a list outside RAM reads zeros', () => {
    const m = model();
    expect(m.apply(indirect(PHB0, 0n, 513n), PE_BUID)).toEqual({ rc: -4 });
    expect(m.apply(indirect(PHB0, 0n, 1n, { list: { at: 'offset', offset: 8 } }), PE_BUID)).toEqual({ rc: -4 });
    expect(m.apply(indirect(PHB0, 0n, 1n, { list: { at: 'phys', phys: 0x40_0000_0008n } }), PE_BUID)).toEqual({ rc: -4 });
    expect(m.apply(indirect(PHB0, 0n, 0n), PE_BUID)).toEqual({ rc: -4 });
    expect(m.apply(get(PHB0, 0n), PE_BUID)).toEqual({ rc: 0, tce: 0n });
    // An aligned offset is a valid list; values tce + i·stride, zeros past `tces`.
    expect(m.apply(indirect(PHB0, 0n, 4n, { list: { at: 'offset', offset: 4096 }, tces: 2 }), PE_BUID)).toEqual({ rc: 0 });
    expect([0n, 0x1000n, 0x2000n].map((i) => m.apply(get(PHB0, i), PE_BUID))).toEqual([
      { rc: 0, tce: 0x1003n },
      { rc: 0, tce: 0x2003n },
      { rc: 0, tce: 0n },
    ]);
    expect(m.apply(indirect(PHB0, LAST - 0x1000n, 3n), PE_BUID)).toEqual({ rc: -4 });
    expect([LAST - 0x1000n, LAST].map((i) => m.apply(get(PHB0, i), PE_BUID))).toEqual([
      { rc: 0, tce: 0x1003n },
      { rc: 0, tce: 0x2003n },
    ]);
    expect(m.apply(indirect(PHB0, 0n, 2n, { list: { at: 'phys', phys: 0x40_0000_0000n } }), PE_BUID)).toEqual({ rc: 0 });
    expect(m.apply(get(PHB0, 0n), PE_BUID)).toEqual({ rc: 0, tce: 0n });
    expect(() => m.apply(indirect(PHB0, 0n, 1n, { list: { at: 'phys', phys: 0x1000n } }), PE_BUID)).toThrow(ModelRefusal);
  });

  it('RTAS: query, create (page-size mask, ws < ps, two windows at most), remove (twice → -3), reset', () => {
    const m = model();
    expect(m.apply({ op: 'query', buid: 'pe' }, PE_BUID)).toEqual({ status: 0, out: [1, 0x80000000, 0x107, 0] });
    expect(m.apply({ op: 'query', buid: 0x800000020000007n }, PE_BUID)).toEqual({ status: -3 });
    expect(m.apply({ op: 'create', buid: 'pe', pageShift: 13, windowShift: 24 }, PE_BUID)).toEqual({ status: -3 });
    expect(m.apply({ op: 'create', buid: 'pe', pageShift: 16, windowShift: 15 }, PE_BUID)).toEqual({ status: -3 });
    expect(m.apply({ op: 'create', buid: 'pe', pageShift: 16, windowShift: 24 }, PE_BUID)).toEqual({
      status: 0,
      out: [0x80000101, 0x8000000, 0],
    });
    expect(m.apply({ op: 'query', buid: 'pe' }, PE_BUID)).toEqual({ status: 0, out: [0, 0x80000000, 0x107, 0] });
    expect(m.apply({ op: 'create', buid: 'pe', pageShift: 12, windowShift: 20 }, PE_BUID)).toEqual({ status: -1 });
    // The DDW's last 64 KiB entry and one past it.
    expect(m.apply(put(EDU_DDW, (1n << 59n) + 0xff0000n, 0x3n), PE_BUID)).toEqual({ rc: 0 });
    expect(m.apply(put(EDU_DDW, (1n << 59n) + 0x1000000n, 0x3n), PE_BUID)).toEqual({ rc: -4 });
    expect(m.apply({ op: 'remove', liobn: 0x80000101 }, PE_BUID)).toEqual({ status: 0 });
    expect(m.apply({ op: 'remove', liobn: 0x80000101 }, PE_BUID)).toEqual({ status: -3 });
    expect(m.apply({ op: 'remove', liobn: 0x8000ff00 }, PE_BUID)).toEqual({ status: -3 });
    expect(() => m.apply({ op: 'create', buid: 'pe', pageShift: 12, windowShift: 12 + MAX_CREATE_ORDER + 1 }, PE_BUID)).toThrow(
      ModelRefusal,
    );
  });

  it('RTAS: the default window removed is not restored; a DDW made then takes its liobn at 0; reset re-creates it zeroed', () => {
    const m = model();
    expect(m.apply(put(EDU, 0n, 0x9003n), PE_BUID)).toEqual({ rc: 0 });
    expect(m.apply({ op: 'remove', liobn: 0x80000100 }, PE_BUID)).toEqual({ status: 0 });
    expect(m.apply(get(EDU, 0n), PE_BUID)).toEqual({ rc: -4 });
    expect(m.apply({ op: 'query', buid: 'pe' }, PE_BUID)).toEqual({ status: 0, out: [2, 0x80000000, 0x107, 0] });
    // Measured on QEMU 10.0.13: with both tables free, dma_liobn[0]'s comes first; with no window active, at dma_win_addr.
    expect(m.apply({ op: 'create', buid: 'pe', pageShift: 16, windowShift: 24 }, PE_BUID)).toEqual({ status: 0, out: [0x80000100, 0, 0] });
    expect(m.apply({ op: 'create', buid: 'pe', pageShift: 12, windowShift: 24 }, PE_BUID)).toEqual({
      status: 0,
      out: [0x80000101, 0x8000000, 0],
    });
    // Removing the default-window table (def_win stays set) restores nothing; removing the last other one resets.
    expect(m.apply({ op: 'remove', liobn: 0x80000100 }, PE_BUID)).toEqual({ status: 0 });
    expect(m.apply({ op: 'remove', liobn: 0x80000101 }, PE_BUID)).toEqual({ status: 0 });
    expect(m.apply({ op: 'query', buid: 'pe' }, PE_BUID)).toEqual({ status: 0, out: [1, 0x80000000, 0x107, 0] });
    expect(m.apply(get(EDU, LAST), PE_BUID)).toEqual({ rc: 0, tce: 0n });
    expect(m.apply(put(EDU, 0n, 0x9003n), PE_BUID)).toEqual({ rc: 0 });
    expect(m.apply({ op: 'reset', buid: 'pe' }, PE_BUID)).toEqual({ status: 0 });
    expect(m.apply(get(EDU, 0n), PE_BUID)).toEqual({ rc: 0, tce: 0n });
    expect(m.apply({ op: 'reset', buid: 0n }, PE_BUID)).toEqual({ status: -3 });
  });

  it("refuses the guest kernel's own window (PHB 0's DDW): the fuzz never aims at it", () => {
    expect(() => model().apply(get(0x80000001n, 1n << 59n), PE_BUID)).toThrow(ModelRefusal);
    expect(
      model()
        .windows()
        .map((w) => w.liobn),
    ).toEqual([PHB0, EDU, EDU_DDW]);
  });

  it('seeded fault misaligned-ioba-refused: a misaligned ioba refused, nothing written; aligned ones as before', () => {
    const m = model(['misaligned-ioba-refused']);
    expect(m.apply(put(PHB0, 0x8n, 0x1003n), PE_BUID)).toEqual({ rc: -4 });
    expect(m.apply(get(PHB0, 0n), PE_BUID)).toEqual({ rc: 0, tce: 0n });
    expect(m.apply(put(PHB0, 0n, 0x1003n), PE_BUID)).toEqual({ rc: 0 });
    expect(m.apply(get(PHB0, 0x10n), PE_BUID)).toEqual({ rc: -4 });
  });

  it('seeded fault partial-write-forgotten: a run off the window writes nothing; the answer is the same', () => {
    const m = model(['partial-write-forgotten']);
    expect(m.apply(stuff(PHB0, LAST, 0x7003n, 2n), PE_BUID)).toEqual({ rc: -4 });
    expect(m.apply(get(PHB0, LAST), PE_BUID)).toEqual({ rc: 0, tce: 0n });
    expect(m.apply(indirect(PHB0, LAST, 2n), PE_BUID)).toEqual({ rc: -4 });
    expect(m.apply(get(PHB0, LAST), PE_BUID)).toEqual({ rc: 0, tce: 0n });
    expect(m.apply(stuff(PHB0, LAST, 0x7003n, 1n), PE_BUID)).toEqual({ rc: 0 });
    expect(m.apply(get(PHB0, LAST), PE_BUID)).toEqual({ rc: 0, tce: 0x7003n });
  });

  it('answersAgree: codes always, values and outputs where the model has them', () => {
    expect(answersAgree({ rc: 0, tce: 3n }, { rc: 0, tce: 3n })).toBe(true);
    expect(answersAgree({ rc: 0, tce: 3n }, { rc: 0, tce: 4n })).toBe(false);
    expect(answersAgree({ rc: -4 }, { rc: 0 })).toBe(false);
    expect(answersAgree({ status: -3 }, { status: -3, out: [7] })).toBe(true);
    expect(answersAgree({ status: 0, out: [1, 2] }, { status: 0, out: [1, 3] })).toBe(false);
  });
});

const GEN: GeneratorOptions = { seed: 1, model: LAB, pePhbIndex: 1, otherPhbIndex: 0 };

describe('the seeded call generator', () => {
  it('mulberry32: the same seed gives the same numbers; bounds hold', () => {
    const a = new Prng(42);
    const b = new Prng(42);
    const xs = Array.from({ length: 100 }, () => a.u32());
    expect(Array.from({ length: 100 }, () => b.u32())).toEqual(xs);
    expect(new Prng(43).u32()).not.toBe(xs[0]);
    // mulberry32's first output for seed 42 (a fixed vector: a change of the PRNG changes every seed's sequence).
    expect(xs[0]).toBe(2581720956);
    const r = new Prng(7);
    for (let i = 0; i < 1000; i++) {
      const v = r.below(10);
      expect(v >= 0 && v < 10 && Number.isInteger(v)).toBe(true);
    }
  });

  it('seed 1 gives the same first 20 calls twice; seeds 1 and 2 differ', () => {
    const first = generateCalls(GEN, 20).map(describeCall);
    expect(generateCalls(GEN, 20).map(describeCall)).toEqual(first);
    expect(generateCalls({ ...GEN, seed: 2 }, 20).map(describeCall)).not.toEqual(first);
    expect(sequenceHash(generateCalls(GEN, 500))).toBe(sequenceHash(generateCalls(GEN, 500)));
  });

  it("the judge's model faults do not change the sequence", () => {
    const faulted = { ...GEN, model: { ...LAB, faults: new Set(['misaligned-ioba-refused'] as const) } };
    expect(sequenceHash(generateCalls(faulted, 300))).toBe(sequenceHash(generateCalls(GEN, 300)));
  });

  it('covers every call type and the cases that matter, and never a call the model refuses', () => {
    const calls = generateCalls(GEN, 5000);
    const m = model();
    const answers = calls.map((c) => m.apply(c, PE_BUID));
    const ops = new Set(calls.map((c) => c.op));
    expect([...ops].sort()).toEqual(['H_GET_TCE', 'H_PUT_TCE', 'H_PUT_TCE_INDIRECT', 'H_STUFF_TCE', 'create', 'query', 'remove', 'reset']);
    const has = (p: (c: FuzzCall) => boolean) => calls.some(p);
    expect(has((c) => c.op === 'H_PUT_TCE' && (c.ioba & 0xfffn) !== 0n)).toBe(true);
    expect(has((c) => c.op === 'H_PUT_TCE' && c.liobn === PHB0 && c.ioba === PAST)).toBe(true);
    expect(has((c) => c.op === 'H_STUFF_TCE' && c.npages === 0n)).toBe(true);
    expect(has((c) => c.op === 'H_PUT_TCE_INDIRECT' && c.npages === 513n)).toBe(true);
    expect(has((c) => c.op === 'H_PUT_TCE_INDIRECT' && c.list.at === 'phys')).toBe(true);
    expect(has((c) => c.op === 'H_PUT_TCE_INDIRECT' && c.list.at === 'offset' && c.list.offset % 4096 !== 0)).toBe(true);
    expect(has((c) => c.op === 'create' && c.buid !== 'pe')).toBe(true);
    // GETs read back values written before (non-zero), and DDWs get written and read.
    expect(calls.filter((c, i) => c.op === 'H_GET_TCE' && 'tce' in answers[i]! && answers[i]!.tce !== 0n).length).toBeGreaterThan(200);
    expect(
      calls.filter((c, i) => c.op === 'H_GET_TCE' && c.liobn === EDU_DDW && 'rc' in answers[i]! && answers[i]!.rc === 0).length,
    ).toBeGreaterThan(20);
    // Within what the scenario steps can say (npages ≤ 2^32) and the create bound.
    expect(calls.every((c) => !('npages' in c) || c.npages <= 1n << 32n)).toBe(true);
    expect(calls.every((c) => c.op !== 'create' || c.windowShift - c.pageShift <= MAX_CREATE_ORDER)).toBe(true);
  });

  it('the next() of a generator is the same call as generateCalls gives', () => {
    const g = new CallGenerator(GEN);
    const seq = generateCalls(GEN, 5);
    for (const c of seq) expect(describeCall(g.next())).toBe(describeCall(c));
  });
});

describe('shrinking a failing sequence (ddmin)', () => {
  /** A "lab" that fails when a 7 follows a 3 somewhere before it (state that persists), at the 7. */
  const replay = async (xs: number[]) => {
    let armed = false;
    for (let i = 0; i < xs.length; i++) {
      if (xs[i] === 3) armed = true;
      if (xs[i] === 7 && armed) return { index: i, signature: 'seven after three' };
    }
    return undefined;
  };

  it('finds the 2 calls that matter among 200, 1-minimal', async () => {
    const xs = Array.from({ length: 200 }, (_, i) => (i === 40 ? 3 : i === 150 ? 7 : 10 + (i % 50)));
    const failure = (await replay(xs))!;
    const r = await shrinkSequence(xs, failure, replay);
    expect(r.calls).toEqual([3, 7]);
    expect(r.failure.index).toBe(1);
    expect(r.cutShort).toBe(false);
    expect(r.tests).toBeLessThan(100);
  });

  it('a single failing call: one replay', async () => {
    const xs = [1, 2, 3, 4, 5, 9];
    const one = async (s: number[]) => (s.indexOf(9) >= 0 ? { index: s.indexOf(9), signature: 'nine' } : undefined);
    const r = await shrinkSequence(xs, { index: 5, signature: 'nine' }, one);
    expect(r).toMatchObject({ calls: [9], tests: 1, cutShort: false });
  });

  it('keeps only failures of the same signature, and stops at its bound', async () => {
    const xs = Array.from({ length: 64 }, (_, i) => i);
    const other = async (s: number[]) => (s.length > 40 ? { index: s.length - 1, signature: 'long' } : { index: 0, signature: 'short' });
    const r = await shrinkSequence(xs, { index: 63, signature: 'long' }, other, { maxTests: 5 });
    expect(r.calls.length).toBeGreaterThan(40);
    expect(r.tests).toBeLessThanOrEqual(5);
    expect(r.cutShort).toBe(true);
  });
});

describe('the scenario file a disagreement is written as', () => {
  it('validates as a scenario: literal calls, the model answers as expect, the reset first and last', () => {
    const m = model(['misaligned-ioba-refused']);
    const calls: FuzzCall[] = [
      put(PHB0, 0x8n, 0x1003n),
      get(PHB0, 0n),
      indirect(EDU, 0n, 2n, { list: { at: 'offset', offset: 4096 } }),
      { op: 'create', buid: 'pe', pageShift: 16, windowShift: 24 },
      { op: 'query', buid: 0x800000020000007n, cfgAddr: 5 },
      { op: 'remove', liobn: 0x80000101 },
    ];
    const file = fuzzScenarioFile({
      seed: 7,
      description: 'test',
      profile: 'emulated',
      device: 'edu1',
      clear: { liobn: PHB0, start: 0n, entries: 262144n },
      calls: calls.map((call, index) => ({ call, index, expected: m.apply(call, PE_BUID) })),
    });
    const def = parseScenarioFile(JSON.stringify(file), 'fuzz-7.json');
    expect(def.steps.map((s) => s.step)).toEqual([
      'bind',
      'tce-window',
      'hcall',
      'rtas',
      'hcall',
      'hcall',
      'hcall',
      'rtas',
      'rtas',
      'rtas',
      'rtas',
      'unbind',
    ]);
    expect(file.steps[4]).toMatchObject({
      call: 'H_PUT_TCE',
      liobn: '0x80000000',
      ioba: '0x8',
      expect: 'H_PARAMETER',
      label: 'seed 7 call 0: H_PUT_TCE',
    });
    expect(file.steps[5]).toMatchObject({ call: 'H_GET_TCE', expect: 'H_SUCCESS', expectTce: '0x0' });
    expect(file.steps[6]).toMatchObject({ list: { tces: 2, at: 'offset', offset: 4096, stride: '0x1000' }, npages: 2 });
    expect(file.steps[7]).toMatchObject({
      service: 'ibm,create-pe-dma-window',
      expect: 'success',
      expectOut: ['0x80000101', '0x8000000', '0x0'],
    });
    expect(file.steps[8]).toMatchObject({ buid: '0x800000020000007', cfgAddr: '0x5', expect: 'parameter error' });
  });
});
