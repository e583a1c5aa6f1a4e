import type { AgentClient } from './agent-client.js';
import { hcallReturnName, rtasStatusName } from './hcall-codes.js';
import { QmpProtocolError } from '../protocol/errors.js';
import { InputError } from '../util/errors.js';

/**
 * A hostile guest's calls, through the agent and the tcelab_hcall test module (guest/hcall): any hypercall, an
 * H_PUT_TCE_INDIRECT whose list the module places, any RTAS call, and a PE's DDW identifiers. The hypervisor's and
 * RTAS's answers are results (rc, status), never exceptions; a reply the agent should not have sent is a QmpProtocolError.
 */

/** A 64-bit value: a bigint, or a number that is a safe non-negative integer. */
export type U64 = bigint | number;

export interface HcallResult {
  opcode: number;
  rc: number;
  /** hcallReturnName(rc): H_SUCCESS, H_PARAMETER… */
  rcName: string;
  /** r4..r12 after the call (H_GET_TCE: out[0] is the TCE). */
  out: bigint[];
}

/** Where H_PUT_TCE_INDIRECT's list is: the module's 4 KiB-aligned page, that page + offset bytes, or a given address. */
export type IndirectList = { at: 'page' } | { at: 'offset'; offset: number } | { at: 'phys'; phys: U64 };

export interface IndirectRequest {
  liobn: U64;
  ioba: U64;
  /** Passed to the hypervisor as given: it may differ from tces.length (PAPR allows at most 512). */
  npages: U64;
  /** The list's values (at most 1024), written big-endian; not written for list.at 'phys'. */
  tces: U64[];
  list: IndirectList;
}

export interface IndirectResult {
  rc: number;
  rcName: string;
  /** The list address the hypervisor was given. */
  listPhys: bigint;
  ntces: number;
}

export interface RtasResult {
  service: string;
  token: number;
  status: number;
  /** rtasStatusName(status): success, parameter error, extended delay 10 ms… */
  statusName: string;
  /** The nret - 1 output words. */
  out: number[];
}

/** One of the guest kernel's TCE tables for a PE (its iommu table group's tables[index]). */
export interface PeTable {
  index: number;
  liobn: bigint;
  windowStart: bigint;
  windowSize: bigint;
  pageShift: number;
}

/** A PCI function's PE as the DDW RTAS calls name it: config address, BUID (and its halves), and its TCE tables. */
export interface PeInfo {
  address: string;
  cfgAddr: number;
  buid: bigint;
  buidHi: number;
  buidLo: number;
  tables: PeTable[];
}

const HCALL_MAX_ARGS = 9;
const INDIRECT_MAX_TCES = 1024;
const INDIRECT_MAX_OFFSET = 8192;
const RTAS_MAX_ARGS = 8;
const RTAS_MAX_RET = 8;
const U64_MAX = (1n << 64n) - 1n;
const U32_MAX = 0xffffffff;
/** The agent reads request lines of at most 1 MiB: the module's base64 and the request around it must fit. */
const MAX_MODULE_BYTES = 700 * 1024;
/** init_module of a module with its debug info under TCG: seconds, not the default 30 s ceiling's worth. */
const MODULE_LOAD_TIMEOUT_MS = 120_000;

/** The DDW RTAS calls' first three arguments for a PE: config address, BUID_HI, BUID_LO. */
export function ddwPeArgs(pe: PeInfo): [number, number, number] {
  return [pe.cfgAddr, pe.buidHi, pe.buidLo];
}

export class GuestHypercalls {
  constructor(readonly agent: AgentClient) {}

  /** Loads a kernel module from its bytes (the agent's init_module); a module of that name already loaded is no error. */
  async loadModule(ko: Buffer): Promise<{ alreadyLoaded: boolean; bytes: number }> {
    if (ko.length === 0 || ko.length > MAX_MODULE_BYTES)
      throw new InputError(
        'module-load',
        'ko',
        `is ${ko.length} bytes: a module of 1 to ${MAX_MODULE_BYTES} bytes is needed (it travels base64 in one request line)`,
        'strip its debug info: powerpc64le-linux-gnu-objcopy --strip-debug',
      );
    return parseModuleLoadReply(await this.agent.execute('module-load', { image: ko.toString('base64') }, MODULE_LOAD_TIMEOUT_MS));
  }

  /** Loads a .ko that is already in the guest (finit_module). */
  async loadModuleAt(path: string): Promise<{ alreadyLoaded: boolean; bytes: number }> {
    if (!path.startsWith('/')) throw new InputError('module-load', 'path', `${JSON.stringify(path)} is not an absolute path`);
    return parseModuleLoadReply(await this.agent.execute('module-load', { path }, MODULE_LOAD_TIMEOUT_MS));
  }

  /** Any hypercall with up to 9 arguments (the rest are 0). */
  async hcall(opcode: number, args: U64[] = []): Promise<HcallResult> {
    if (args.length > HCALL_MAX_ARGS) throw new InputError('hcall', 'args', `has ${args.length} values: at most ${HCALL_MAX_ARGS}`);
    const request = { opcode: hex(u64('hcall', 'opcode', opcode)), args: args.map((a, i) => hex(u64('hcall', `args[${i}]`, a))) };
    return parseHcallReply(await this.agent.execute('hcall', request));
  }

  async hcallIndirect(req: IndirectRequest): Promise<IndirectResult> {
    const what = 'hcall-indirect';
    if (req.tces.length > INDIRECT_MAX_TCES)
      throw new InputError(what, 'tces', `has ${req.tces.length} values: at most ${INDIRECT_MAX_TCES}`);
    const list = req.list;
    if (list.at === 'offset' && !(Number.isInteger(list.offset) && list.offset >= 0 && list.offset <= INDIRECT_MAX_OFFSET))
      throw new InputError(what, 'list.offset', `${list.offset} is not a byte offset of 0 to ${INDIRECT_MAX_OFFSET}`);
    const request = {
      liobn: hex(u64(what, 'liobn', req.liobn)),
      ioba: hex(u64(what, 'ioba', req.ioba)),
      npages: hex(u64(what, 'npages', req.npages)),
      tces: req.tces.map((t, i) => hex(u64(what, `tces[${i}]`, t))),
      list: list.at,
      ...(list.at === 'offset' ? { offset: list.offset } : {}),
      ...(list.at === 'phys' ? { phys: hex(u64(what, 'list.phys', list.phys)) } : {}),
    };
    return parseIndirectReply(await this.agent.execute(what, request));
  }

  /** An RTAS call by service name (its token from the guest's /rtas node): up to 8 argument words, nret words back. */
  async rtas(service: string, args: number[], nret: number): Promise<RtasResult> {
    if (!/^[\w,.+-]{1,63}$/.test(service))
      throw new InputError('rtas', 'service', `${JSON.stringify(service)} is not an RTAS service name`);
    if (args.length > RTAS_MAX_ARGS) throw new InputError('rtas', 'args', `has ${args.length} words: at most ${RTAS_MAX_ARGS}`);
    args.forEach((a, i) => {
      if (!Number.isInteger(a) || a < 0 || a > U32_MAX)
        throw new InputError('rtas', `args[${i}]`, `${a} is not a 32-bit word (0 to 0xffffffff)`);
    });
    if (!Number.isInteger(nret) || nret < 1 || nret > RTAS_MAX_RET)
      throw new InputError('rtas', 'nret', `${nret} is not a count of returned words (1 to ${RTAS_MAX_RET}, the status included)`);
    return parseRtasReply(await this.agent.execute('rtas', { service, args, nret }), nret);
  }

  /** address: a PCI address such as 0001:00:01.0. */
  async peInfo(address: string): Promise<PeInfo> {
    if (!/^[0-9a-f]{4}:[0-9a-f]{2}:[0-1][0-9a-f]\.[0-7]$/i.test(address))
      throw new InputError('pe-info', 'address', `${JSON.stringify(address)} is not a PCI address such as 0001:00:01.0`);
    return parsePeInfoReply(await this.agent.execute('pe-info', { address }));
  }
}

function u64(command: string, field: string, v: U64): bigint {
  const ok = typeof v === 'bigint' ? v >= 0n && v <= U64_MAX : Number.isSafeInteger(v) && v >= 0;
  if (!ok) throw new InputError(command, field, `${v} is not a 64-bit unsigned value`);
  return BigInt(v);
}

function hex(v: bigint): string {
  return `0x${v.toString(16)}`;
}

/** Reads a reply's fields, each checked; a wrong one is the agent's protocol error naming the command and the field. */
class ReplyReader {
  private readonly obj: Record<string, unknown>;

  constructor(
    private readonly command: string,
    reply: unknown,
  ) {
    if (typeof reply !== 'object' || reply === null || Array.isArray(reply)) throw this.bad('the reply', reply, 'an object');
    this.obj = reply as Record<string, unknown>;
  }

  bad(field: string, v: unknown, want: string): QmpProtocolError {
    return new QmpProtocolError('agent', `${this.command} reply: ${field} is ${JSON.stringify(v) ?? 'absent'}, expected ${want}`);
  }

  int(key: string): number {
    const v = this.obj[key];
    if (typeof v !== 'number' || !Number.isSafeInteger(v)) throw this.bad(key, v, 'an integer');
    return v;
  }

  bool(key: string): boolean {
    const v = this.obj[key];
    if (typeof v !== 'boolean') throw this.bad(key, v, 'a boolean');
    return v;
  }

  str(key: string): string {
    const v = this.obj[key];
    if (typeof v !== 'string') throw this.bad(key, v, 'a string');
    return v;
  }

  /** A "0x…" string of at most 64 bits. */
  u64(key: string, v: unknown = this.obj[key]): bigint {
    if (typeof v !== 'string' || !/^0x[0-9a-f]{1,16}$/i.test(v)) throw this.bad(key, v, 'a "0x…" string of at most 64 bits');
    return BigInt(v);
  }

  array(key: string, length?: number): unknown[] {
    const v = this.obj[key];
    if (!Array.isArray(v) || (length !== undefined && v.length !== length))
      throw this.bad(key, v, length === undefined ? 'an array' : `an array of ${length}`);
    return v;
  }
}

export function parseModuleLoadReply(reply: unknown): { alreadyLoaded: boolean; bytes: number } {
  const r = new ReplyReader('module-load', reply);
  return { alreadyLoaded: r.bool('alreadyLoaded'), bytes: r.int('bytes') };
}

export function parseHcallReply(reply: unknown): HcallResult {
  const r = new ReplyReader('hcall', reply);
  const rc = r.int('rc');
  const out = r.array('out', HCALL_MAX_ARGS).map((v, i) => r.u64(`out[${i}]`, v));
  return { opcode: Number(r.u64('opcode')), rc, rcName: hcallReturnName(rc), out };
}

export function parseIndirectReply(reply: unknown): IndirectResult {
  const r = new ReplyReader('hcall-indirect', reply);
  const rc = r.int('rc');
  return { rc, rcName: hcallReturnName(rc), listPhys: r.u64('listPhys'), ntces: r.int('ntces') };
}

export function parseRtasReply(reply: unknown, nret: number): RtasResult {
  const r = new ReplyReader('rtas', reply);
  const status = r.int('status');
  const out = r.array('out', nret - 1).map((v, i) => {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > U32_MAX) throw r.bad(`out[${i}]`, v, 'a 32-bit word');
    return v;
  });
  return { service: r.str('service'), token: r.int('token'), status, statusName: rtasStatusName(status), out };
}

export function parsePeInfoReply(reply: unknown): PeInfo {
  const r = new ReplyReader('pe-info', reply);
  const tables = r.array('tables').map((t, i) => {
    const tr = new ReplyReader(`pe-info tables[${i}]`, t);
    return {
      index: tr.int('index'),
      liobn: tr.u64('liobn'),
      windowStart: tr.u64('windowStart'),
      windowSize: tr.u64('windowSize'),
      pageShift: tr.int('pageShift'),
    };
  });
  const word = (key: string) => {
    const v = r.u64(key);
    if (v > BigInt(U32_MAX)) throw r.bad(key, hex(v), 'a 32-bit word');
    return Number(v);
  };
  return {
    address: r.str('address'),
    cfgAddr: word('cfgAddr'),
    buid: r.u64('buid'),
    buidHi: word('buidHi'),
    buidLo: word('buidLo'),
    tables,
  };
}
