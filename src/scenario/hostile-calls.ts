import { readFile } from 'node:fs/promises';
import { GuestHypercalls, type IndirectList } from '../agent/hcall.js';
import { HCALL_OPCODES, HCALL_RETURN_CODES, RTAS_STATUSES } from '../agent/hcall-codes.js';
import { runsUnderKvm } from '../qemu/profile.js';
import { type KernelDefectId, knownDefectText } from './kernel-defects.js';
import type { ScenarioContext } from './scenario.js';

/**
 * A hostile guest's calls as scenario steps (hcall, rtas, tce-window): windows named by what the guest kernel knows
 * of a PE, arguments placed relative to them (the last entry, one past the end, a misaligned ioba), the answer
 * checked against what the handler's source promises, and — where a call is refused — that nothing was written.
 */

export const HOSTILE_MODULE = 'tcelab_hcall';

/** A DMA window as the hypercalls address it: its liobn, its bus range and its TCE page size. */
export interface TceWindow {
  liobn: bigint;
  start: bigint;
  size: bigint;
  pageShift: number;
  /** The PE that owns it (PCI address), for the DDW RTAS calls. */
  pe?: string;
}

export type HcallName = keyof typeof HCALL_OPCODES;
export const HCALL_NAMES = Object.keys(HCALL_OPCODES) as HcallName[];
export const RETURN_NAMES = Object.keys(HCALL_RETURN_CODES);
export const RTAS_NAMES = Object.keys(RTAS_STATUSES);

/** The module loaded in the guest (once per run), or undefined after recording why it cannot be (not applicable). */
export async function hypercalls(
  ctx: ScenarioContext,
  state: { hc?: GuestHypercalls | string },
  tag: string,
): Promise<GuestHypercalls | undefined> {
  if (state.hc === undefined) {
    const m = ctx.guestModule(HOSTILE_MODULE);
    if ('notApplicable' in m) state.hc = m.notApplicable;
    else {
      const hc = new GuestHypercalls(ctx.agent);
      const loaded = await hc.loadModule(await readFile(m.module.ko));
      ctx.progress.info(`  loaded ${HOSTILE_MODULE} (${loaded.bytes} bytes; ${m.module.against.source}) into the guest`);
      state.hc = hc;
    }
  }
  if (typeof state.hc === 'string') {
    ctx.checks.notApplicable(tag, state.hc);
    return undefined;
  }
  return state.hc;
}

/** Which handler answers the TCE hypercalls: the KVM host's kernel, or QEMU's own code under TCG. */
export const handlerOf = (ctx: ScenarioContext): 'kvm' | 'qemu' => (runsUnderKvm(ctx.profile) ? 'kvm' : 'qemu');

/** Where in a window a call aims: an entry index, the last entry, one past the end; plus a byte offset (misaligned). */
export type EntryRef = number | 'last' | 'end';

export function entryCount(w: TceWindow): bigint {
  return w.size >> BigInt(w.pageShift);
}

export function iobaOf(w: TceWindow, entry: EntryRef, byteOffset = 0): bigint {
  const n = entryCount(w);
  const index = entry === 'last' ? n - 1n : entry === 'end' ? n : BigInt(entry);
  return w.start + (index << BigInt(w.pageShift)) + BigInt(byteOffset);
}

export interface HcallRequest {
  call: HcallName;
  liobn: bigint;
  ioba: bigint;
  tce: bigint;
  npages: number;
  /** An INDIRECT list: tces values, value i = tce + i·stride (mod 2^64; stride 0 by default: tces copies of tce). */
  list?: { tces: number; stride?: bigint } & IndirectList;
}

const U64_MASK = (1n << 64n) - 1n;

/** Issues one TCE hypercall; its return code's name. */
export async function issue(hc: GuestHypercalls, r: HcallRequest): Promise<{ rc: number; name: string; out0?: bigint }> {
  if (r.call === 'H_PUT_TCE_INDIRECT') {
    const list = r.list ?? { at: 'page' as const, tces: r.npages };
    const stride = 'stride' in list ? (list.stride ?? 0n) : 0n;
    const tces = Array.from({ length: list.tces }, (_, i) => (r.tce + BigInt(i) * stride) & U64_MASK);
    const res = await hc.hcallIndirect({ liobn: r.liobn, ioba: r.ioba, npages: r.npages, tces, list });
    return { rc: res.rc, name: res.rcName };
  }
  const args = {
    H_GET_TCE: [r.liobn, r.ioba],
    H_PUT_TCE: [r.liobn, r.ioba, r.tce],
    H_STUFF_TCE: [r.liobn, r.ioba, r.tce, BigInt(r.npages)],
  }[r.call];
  const res = await hc.hcall(HCALL_OPCODES[r.call], args);
  return { rc: res.rc, name: res.rcName, out0: res.out[0] };
}

/** The entries of a window a refused call must have left alone: those it aimed at inside the window (at most 8) and the last. */
export function guardedEntries(w: TceWindow, ioba: bigint, npages: number): bigint[] {
  const n = entryCount(w);
  const first = (ioba - w.start) >> BigInt(w.pageShift);
  const out = new Set<bigint>([n - 1n]);
  for (let i = 0n; i < BigInt(Math.min(Math.max(npages, 1), 8)); i++) if (first + i >= 0n && first + i < n) out.add(first + i);
  return [...out].sort((a, b) => (a < b ? -1 : 1));
}

/** H_GET_TCE of each entry (the value, or the refusal's name). */
export async function readEntries(hc: GuestHypercalls, w: TceWindow, entries: bigint[]): Promise<string[]> {
  const out: string[] = [];
  for (const e of entries) {
    const r = await hc.hcall(HCALL_OPCODES.H_GET_TCE, [w.liobn, w.start + (e << BigInt(w.pageShift))]);
    out.push(r.rc === 0 ? `0x${r.out[0]!.toString(16)}` : r.rcName);
  }
  return out;
}

/** The step's expected answer on this lab: under KVM its expectUnderKvm when given. */
export function expectedAnswer(ctx: ScenarioContext, s: { expect: string; expectUnderKvm?: string }): string {
  return handlerOf(ctx) === 'kvm' && s.expectUnderKvm ? s.expectUnderKvm : s.expect;
}

/**
 * Records an answer check; a named defect turns a wrong answer into that known defect where the defect's code is what
 * answered (a KVM host's kernel for the hypercalls) and this kernel's source is not known to have its fix.
 */
export function recordAnswer(
  ctx: ScenarioContext,
  name: string,
  measured: string,
  expected: string,
  detail: string,
  defect: KernelDefectId | undefined,
  defectApplies: boolean,
): boolean {
  const known = defect && defectApplies && measured !== expected ? knownDefectText(defect, ctx.kernel) : undefined;
  return ctx.checks.record(name, measured === expected, expected, measured, detail, known);
}

/**
 * The kernel reports a defect's calls provoke on a KVM host: defect 4 on a window with a VFIO group attached makes
 * kvmppc_tce_iommu_do_unmap() WARN_ON_ONCE when the hardware table refuses an entry past its end (book3s_64_vio.c).
 */
const DEFECT_REPORTS: Partial<Record<KernelDefectId, RegExp>> = {
  'ioba-npages-ignored': /kvmppc_tce_iommu_(do_)?unmap|book3s_64_vio\.c/,
};

/** Declares the reports a defect's calls may provoke (once per run), reported as that defect where this kernel lacks its fix. */
export function expectDefectReports(ctx: ScenarioContext, id: KernelDefectId): void {
  const pattern = DEFECT_REPORTS[id];
  const text = knownDefectText(id, ctx.kernel);
  if (!pattern || !text || declared.has(ctx)) return;
  declared.add(ctx);
  ctx.expectKernelReport({ pattern, knownDefect: text });
  // The same refusal, failing in the attached hardware table, hands the call to QEMU (H_TOO_HARD): the TCE path's verdict.
  ctx.checks.expectFailure(/^KVM: QEMU handled none of the guest's TCE updates/, `${text}; KVM handed the call to QEMU (H_TOO_HARD)`);
}
const declared = new WeakSet<ScenarioContext>();
