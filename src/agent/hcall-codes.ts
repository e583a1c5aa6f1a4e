/**
 * The numbers a hostile guest's calls send and get back, by name: hypercall opcodes, hypercall return codes
 * (arch/powerpc/include/asm/hvcall.h, identical in Linux 6.12 and 7.2 but for codes neither returns for TCEs) and
 * RTAS statuses (arch/powerpc/kernel/rtas.c, rtas_call()'s comment, after PAPR's 7.2.8 "RTAS Return Codes").
 */

/** The TCE hypercalls (opcodes). H_PUT_TCE_INDIRECT is 0x13C: 0x124 is H_BULK_REMOVE. */
export const HCALL_OPCODES = {
  H_GET_TCE: 0x1c,
  H_PUT_TCE: 0x20,
  H_STUFF_TCE: 0x138,
  H_PUT_TCE_INDIRECT: 0x13c,
} as const;

/** Every hypercall return code asm/hvcall.h defines, but the long-busy range's start and end aliases. */
export const HCALL_RETURN_CODES = {
  H_SUCCESS: 0,
  H_BUSY: 1,
  H_CLOSED: 2,
  H_NOT_AVAILABLE: 3,
  H_CONSTRAINED: 4,
  H_PARTIAL: 5,
  H_IN_PROGRESS: 14,
  H_PAGE_REGISTERED: 15,
  H_PARTIAL_STORE: 16,
  H_PENDING: 17,
  H_CONTINUE: 18,
  H_LONG_BUSY_ORDER_1_MSEC: 9900,
  H_LONG_BUSY_ORDER_10_MSEC: 9901,
  H_LONG_BUSY_ORDER_100_MSEC: 9902,
  H_LONG_BUSY_ORDER_1_SEC: 9903,
  H_LONG_BUSY_ORDER_10_SEC: 9904,
  H_LONG_BUSY_ORDER_100_SEC: 9905,
  H_TOO_HARD: 9999,
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
  H_DEST_PARM: -14,
  H_REMOTE_PARM: -15,
  H_RESOURCE: -16,
  H_ADAPTER_PARM: -17,
  H_RH_PARM: -18,
  H_RCQ_PARM: -19,
  H_SCQ_PARM: -20,
  H_EQ_PARM: -21,
  H_RT_PARM: -22,
  H_ST_PARM: -23,
  H_SIGT_PARM: -24,
  H_TOKEN_PARM: -25,
  H_MLENGTH_PARM: -27,
  H_MEM_PARM: -28,
  H_MEM_ACCESS_PARM: -29,
  H_ATTR_PARM: -30,
  H_PORT_PARM: -31,
  H_MCG_PARM: -32,
  H_VL_PARM: -33,
  H_TSIZE_PARM: -34,
  H_TRACE_PARM: -35,
  H_MASK_PARM: -37,
  H_MCG_FULL: -38,
  H_ALIAS_EXIST: -39,
  H_P_COUNTER: -40,
  H_TABLE_FULL: -41,
  H_ALT_TABLE: -42,
  H_MR_CONDITION: -43,
  H_NOT_ENOUGH_RESOURCES: -44,
  H_R_STATE: -45,
  H_RESCINDED: -46,
  H_ABORTED: -54,
  H_P2: -55,
  H_P3: -56,
  H_P4: -57,
  H_P5: -58,
  H_P6: -59,
  H_P7: -60,
  H_P8: -61,
  H_P9: -62,
  H_NOOP: -63,
  H_TOO_BIG: -64,
  H_UNSUPPORTED: -67,
  H_OVERLAP: -68,
  H_INTERRUPT: -69,
  H_BAD_DATA: -70,
  H_NOT_ACTIVE: -71,
  H_SG_LIST: -72,
  H_OP_MODE: -73,
  H_COP_HW: -74,
  H_STATE: -75,
  H_IN_USE: -77,
  H_INVALID_ELEMENT_ID: -79,
  H_INVALID_ELEMENT_SIZE: -80,
  H_INVALID_ELEMENT_VALUE: -81,
  H_INPUT_BUFFER_NOT_DEFINED: -82,
  H_INPUT_BUFFER_TOO_SMALL: -83,
  H_OUTPUT_BUFFER_NOT_DEFINED: -84,
  H_OUTPUT_BUFFER_TOO_SMALL: -85,
} as const;

export type HcallReturnName = keyof typeof HCALL_RETURN_CODES;

const hcallNames = new Map<number, string>(Object.entries(HCALL_RETURN_CODES).map(([name, code]) => [code, name]));

/** A hypercall return code's name (H_PARAMETER), or "rc N" for one hvcall.h does not name. */
export function hcallReturnName(rc: number): string {
  return hcallNames.get(rc) ?? `rc ${rc}`;
}

/** The RTAS statuses rtas_call() documents; 9900–9905 and the vendor ranges are named by rtasStatusName. */
export const RTAS_STATUSES = {
  success: 0,
  'hardware error': -1,
  busy: -2,
  'parameter error': -3,
  'unexpected state change': -7,
  'multi-level isolation error': -9000,
} as const;

const rtasNames = new Map<number, string>(Object.entries(RTAS_STATUSES).map(([name, code]) => [code, name]));

/**
 * Ranges of RTAS statuses, first match wins: 990x asks to call again after 10^x ms. -3 is also how the DDW calls say a
 * PE or window is "not found" (a parameter names nothing).
 */
const RTAS_RANGES: ReadonlyArray<{ from: number; to: number; name: (status: number) => string }> = [
  { from: 9900, to: 9905, name: (s) => `extended delay ${10 ** (s - 9900)} ms` },
  { from: 9000, to: 9899, name: (s) => `vendor-specific success ${s}` },
  { from: -9999, to: -9004, name: (s) => `vendor-specific error ${s}` },
];

/** An RTAS status's name ("parameter error", "extended delay 100 ms"), or "status N" for a function-specific one. */
export function rtasStatusName(status: number): string {
  const named = rtasNames.get(status);
  if (named) return named;
  const range = RTAS_RANGES.find((r) => status >= r.from && status <= r.to);
  return range ? range.name(status) : `status ${status}`;
}
