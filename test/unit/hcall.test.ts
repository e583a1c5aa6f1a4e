import { describe, expect, it } from 'vitest';
import { HCALL_OPCODES, HCALL_RETURN_CODES, RTAS_STATUSES, hcallReturnName, rtasStatusName } from '../../src/agent/hcall-codes.js';
import {
  ddwPeArgs,
  parseHcallReply,
  parseIndirectReply,
  parseModuleLoadReply,
  parsePeInfoReply,
  parseRtasReply,
} from '../../src/agent/hcall.js';
import { QmpProtocolError } from '../../src/protocol/errors.js';

describe('hypercall return codes and RTAS statuses by name', () => {
  it("has asm/hvcall.h's values, one name per number", () => {
    expect(HCALL_RETURN_CODES).toMatchObject({
      H_SUCCESS: 0,
      H_BUSY: 1,
      H_HARDWARE: -1,
      H_FUNCTION: -2,
      H_PRIVILEGE: -3,
      H_PARAMETER: -4,
      H_BAD_MODE: -5,
      H_PTEG_FULL: -6,
      H_NOT_FOUND: -7,
      H_RESERVED_DABR: -8,
      H_NO_MEM: -9,
      H_AUTHORITY: -10,
      H_PERMISSION: -11,
      H_DROPPED: -12,
      H_SOURCE_PARM: -13,
      H_LONG_BUSY_ORDER_1_MSEC: 9900,
      H_LONG_BUSY_ORDER_100_SEC: 9905,
      H_TOO_HARD: 9999,
      H_OUTPUT_BUFFER_TOO_SMALL: -85,
    });
    const codes = Object.values(HCALL_RETURN_CODES);
    expect(new Set(codes).size).toBe(codes.length);
    expect(HCALL_OPCODES).toEqual({ H_GET_TCE: 0x1c, H_PUT_TCE: 0x20, H_STUFF_TCE: 0x138, H_PUT_TCE_INDIRECT: 0x13c });
  });

  it('names a code both ways; an unnamed code says its number', () => {
    for (const [name, code] of Object.entries(HCALL_RETURN_CODES)) expect(hcallReturnName(code)).toBe(name);
    expect(hcallReturnName(-26)).toBe('rc -26');
  });

  it('names RTAS statuses, the extended-delay and vendor ranges too', () => {
    expect(rtasStatusName(0)).toBe('success');
    expect(rtasStatusName(-1)).toBe('hardware error');
    expect(rtasStatusName(-2)).toBe('busy');
    expect(rtasStatusName(-3)).toBe('parameter error');
    expect(rtasStatusName(9900)).toBe('extended delay 1 ms');
    expect(rtasStatusName(9905)).toBe('extended delay 100000 ms');
    expect(rtasStatusName(9001)).toBe('vendor-specific success 9001');
    expect(rtasStatusName(-9004)).toBe('vendor-specific error -9004');
    expect(rtasStatusName(-5)).toBe('status -5');
    expect(Object.keys(RTAS_STATUSES)).toContain('unexpected state change');
  });
});

describe("the agent's hcall, hcall-indirect, rtas, pe-info and module-load replies", () => {
  const nine = ['0x0', '0x1000', '0x0', '0x0', '0x0', '0x0', '0x0', '0x0', '0xffffffffffffffff'];

  it('reads a well-formed reply, u64 strings as bigints and codes by name', () => {
    expect(parseHcallReply({ opcode: '0x1c', rc: -4, out: nine })).toEqual({
      opcode: 0x1c,
      rc: -4,
      rcName: 'H_PARAMETER',
      out: [0n, 0x1000n, 0n, 0n, 0n, 0n, 0n, 0n, (1n << 64n) - 1n],
    });
    expect(parseIndirectReply({ rc: 0, listPhys: '0x1f3a008', ntces: 3 })).toEqual({
      rc: 0,
      rcName: 'H_SUCCESS',
      listPhys: 0x1f3a008n,
      ntces: 3,
    });
    expect(parseRtasReply({ service: 'ibm,query-pe-dma-window', token: 8203, status: 0, out: [1, 32768, 0x13, 0] }, 5)).toEqual({
      service: 'ibm,query-pe-dma-window',
      token: 8203,
      status: 0,
      statusName: 'success',
      out: [1, 32768, 0x13, 0],
    });
    expect(parseModuleLoadReply({ alreadyLoaded: true, bytes: 9000 })).toEqual({ alreadyLoaded: true, bytes: 9000 });
    const pe = parsePeInfoReply({
      address: '0001:00:01.0',
      cfgAddr: '0x800',
      buid: '0x800000020000001',
      buidHi: '0x8000000',
      buidLo: '0x20000001',
      tables: [{ index: 0, liobn: '0x80000100', windowStart: '0x0', windowSize: '0x40000000', pageShift: 12 }],
    });
    expect(pe.tables[0]).toEqual({ index: 0, liobn: 0x80000100n, windowStart: 0n, windowSize: 0x40000000n, pageShift: 12 });
    expect(ddwPeArgs(pe)).toEqual([0x800, 0x8000000, 0x20000001]);
  });

  it('refuses a malformed reply with the protocol error naming the command and field', () => {
    const bad: Array<[() => unknown, RegExp]> = [
      [() => parseHcallReply(null), /hcall reply: the reply is null, expected an object/],
      [() => parseHcallReply({ opcode: '0x1c', rc: '-4', out: nine }), /hcall reply: rc is "-4", expected an integer/],
      [() => parseHcallReply({ opcode: '0x1c', rc: 0, out: nine.slice(1) }), /hcall reply: out is .*expected an array of 9/],
      [() => parseHcallReply({ opcode: '0x1c', rc: 0, out: [...nine.slice(1), 12] }), /out\[8\] is 12, expected a "0x…" string/],
      [() => parseHcallReply({ opcode: '0x1c', rc: 0, out: [...nine.slice(1), '0x10000000000000000'] }), /out\[8\]/],
      [() => parseIndirectReply({ rc: 0, ntces: 1 }), /hcall-indirect reply: listPhys is absent/],
      [() => parseRtasReply({ service: 's', token: 1, status: 0, out: [1] }, 3), /rtas reply: out is \[1\], expected an array of 2/],
      [() => parseRtasReply({ service: 's', token: 1, status: 0, out: [-1] }, 2), /rtas reply: out\[0\] is -1, expected a 32-bit word/],
      [() => parsePeInfoReply({ address: 'a', cfgAddr: '0x100000000', buid: '0x1', buidHi: '0x0', buidLo: '0x1', tables: [] }), /cfgAddr/],
      [
        () => parsePeInfoReply({ address: 'a', cfgAddr: '0x0', buid: '0x1', buidHi: '0x0', buidLo: '0x1', tables: [{}] }),
        /pe-info tables\[0\] reply/,
      ],
      [() => parseModuleLoadReply({ bytes: 1 }), /module-load reply: alreadyLoaded is absent/],
    ];
    for (const [parse, message] of bad) {
      expect(parse).toThrow(QmpProtocolError);
      expect(parse).toThrow(message);
    }
  });
});
