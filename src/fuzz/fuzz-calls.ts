/**
 * The calls a hostile-guest fuzz run issues, as plain data: the four TCE hypercalls with their raw 64-bit arguments and
 * the four DDW RTAS calls on the PE under test. A call is literal (no reference to a window by name), so a sequence
 * replays the same on any lab, and its text (describeCall) is what the run's sequence hash is taken over.
 */

export type HcallOp = 'H_GET_TCE' | 'H_PUT_TCE' | 'H_STUFF_TCE' | 'H_PUT_TCE_INDIRECT';
export type RtasOp = 'query' | 'create' | 'remove' | 'reset';
export type CallOp = HcallOp | RtasOp;

export const CALL_OPS: readonly CallOp[] = [
  'H_GET_TCE',
  'H_PUT_TCE',
  'H_STUFF_TCE',
  'H_PUT_TCE_INDIRECT',
  'query',
  'create',
  'remove',
  'reset',
];

/** The DDW RTAS calls by their RTAS service names. */
export const RTAS_SERVICES: Record<RtasOp, string> = {
  query: 'ibm,query-pe-dma-window',
  create: 'ibm,create-pe-dma-window',
  remove: 'ibm,remove-pe-dma-window',
  reset: 'ibm,reset-pe-dma-window',
};

/**
 * Where H_PUT_TCE_INDIRECT's list is: the module's page (4 KiB aligned; zeroed before each call, so entries past
 * `tces` read 0), that page + offset bytes, or a physical address given as is (nothing written there).
 */
export type ListPlace = { at: 'page' } | { at: 'offset'; offset: number } | { at: 'phys'; phys: bigint };

export type FuzzCall =
  | { op: 'H_GET_TCE'; liobn: bigint; ioba: bigint }
  | { op: 'H_PUT_TCE'; liobn: bigint; ioba: bigint; tce: bigint }
  | { op: 'H_STUFF_TCE'; liobn: bigint; ioba: bigint; tce: bigint; npages: bigint }
  | {
      op: 'H_PUT_TCE_INDIRECT';
      liobn: bigint;
      ioba: bigint;
      npages: bigint;
      list: ListPlace;
      /** How many values the module writes to a page or offset list: value i is tce + i·stride (mod 2^64). */
      tces: number;
      tce: bigint;
      stride: bigint;
    }
  /** buid 'pe': the PE under test's PHB; a number: that BUID (one no PHB has). cfgAddr: the PE's, or this word. */
  | { op: 'query'; buid: 'pe' | bigint; cfgAddr?: number }
  | { op: 'create'; buid: 'pe' | bigint; cfgAddr?: number; pageShift: number; windowShift: number }
  | { op: 'remove'; liobn: number }
  | { op: 'reset'; buid: 'pe' | bigint; cfgAddr?: number };

/** What a handler answered: a hypercall's return code (and H_GET_TCE's value), or an RTAS status and its outputs. */
export type Answer = { rc: number; tce?: bigint } | { status: number; out?: number[] };

export const U64_MASK = (1n << 64n) - 1n;

export const hex = (v: bigint | number): string => `0x${v.toString(16)}`;

/** The values an INDIRECT call's list holds at page or offset (tce + i·stride); the rest of its buffer is zero. */
export function listValues(c: Extract<FuzzCall, { op: 'H_PUT_TCE_INDIRECT' }>): bigint[] {
  return Array.from({ length: c.tces }, (_, i) => (c.tce + BigInt(i) * c.stride) & U64_MASK);
}

const placeText = (p: ListPlace) => (p.at === 'page' ? 'page' : p.at === 'offset' ? `page+${p.offset}` : `phys ${hex(p.phys)}`);
const buidText = (b: 'pe' | bigint) => (b === 'pe' ? 'pe' : hex(b));
const cfgText = (c: number | undefined) => (c === undefined ? '' : ` cfg=${hex(c)}`);

/** One line that says everything about a call (the sequence hash is over these). */
export function describeCall(c: FuzzCall): string {
  switch (c.op) {
    case 'H_GET_TCE':
      return `H_GET_TCE liobn=${hex(c.liobn)} ioba=${hex(c.ioba)}`;
    case 'H_PUT_TCE':
      return `H_PUT_TCE liobn=${hex(c.liobn)} ioba=${hex(c.ioba)} tce=${hex(c.tce)}`;
    case 'H_STUFF_TCE':
      return `H_STUFF_TCE liobn=${hex(c.liobn)} ioba=${hex(c.ioba)} tce=${hex(c.tce)} npages=${c.npages}`;
    case 'H_PUT_TCE_INDIRECT':
      return (
        `H_PUT_TCE_INDIRECT liobn=${hex(c.liobn)} ioba=${hex(c.ioba)} npages=${c.npages} list=${placeText(c.list)} ` +
        `tces=${c.tces} tce=${hex(c.tce)} stride=${hex(c.stride)}`
      );
    case 'query':
    case 'reset':
      return `${c.op} buid=${buidText(c.buid)}${cfgText(c.cfgAddr)}`;
    case 'create':
      return `create buid=${buidText(c.buid)}${cfgText(c.cfgAddr)} pageShift=${c.pageShift} windowShift=${c.windowShift}`;
    case 'remove':
      return `remove liobn=${hex(c.liobn)}`;
  }
}

/** An answer as text: "H_SUCCESS tce=0x1003", "status 0 out=[0x1, 0x80000000, 0x107, 0x0]". */
export function describeAnswer(a: Answer, rcName: (rc: number) => string): string {
  if ('rc' in a) return `${rcName(a.rc)}${a.tce === undefined ? '' : ` tce=${hex(a.tce)}`}`;
  return `status ${a.status}${a.out ? ` out=[${a.out.map(hex).join(', ')}]` : ''}`;
}

/**
 * Whether what was measured is what was expected: the return code or status always; H_GET_TCE's value and an RTAS
 * call's outputs where the expectation has them (on success: a refused call's outputs are whatever was left there).
 */
export function answersAgree(expected: Answer, measured: Answer): boolean {
  if ('rc' in expected) {
    if (!('rc' in measured) || expected.rc !== measured.rc) return false;
    return expected.tce === undefined || expected.tce === measured.tce;
  }
  if (!('status' in measured) || expected.status !== measured.status) return false;
  if (!expected.out) return true;
  return measured.out !== undefined && expected.out.every((w, i) => measured.out![i] === w);
}
