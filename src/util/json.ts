/**
 * JSON.stringify replacer for tcelab's records: bigints (DMA window addresses) as hex strings, an unlimited
 * RLIMIT (Infinity) as "unlimited" — JSON has neither.
 */
export const bigintSafe = (_k: string, v: unknown) => (typeof v === 'bigint' ? `0x${v.toString(16)}` : v === Infinity ? 'unlimited' : v);
