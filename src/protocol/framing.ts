/**
 * Line framing shared by QMP and the guest agent (QGA's wire format): one JSON
 * object per line. Bytes are accumulated until '\n'; a line longer than
 * maxLineBytes is discarded (up to its end) and reported, never buffered
 * without bound. A 0xFF byte is the QGA resync delimiter: while `resyncing`,
 * everything up to and including the next 0xFF is dropped; 0xFF bytes that
 * start a line later (a late answer to an earlier resync) are dropped too.
 */
export type Frame =
  | { kind: 'message'; value: Record<string, unknown>; raw: string }
  | { kind: 'malformed'; raw: string; why: string }
  | { kind: 'oversized'; bytes: number };

export const RESYNC_DELIMITER = 0xff;

export class JsonLineDecoder {
  private parts: Buffer[] = [];
  private partBytes = 0;
  private discarding = false;
  private discardedBytes = 0;
  private resyncing = false;

  constructor(private readonly maxLineBytes: number) {}

  /** Drop input until the next 0xFF delimiter (QGA guest-sync-delimited). */
  startResync(): void {
    this.resyncing = true;
    this.parts = [];
    this.partBytes = 0;
  }

  push(chunk: Buffer): Frame[] {
    const frames: Frame[] = [];
    let start = 0;
    if (this.resyncing) {
      const delim = chunk.indexOf(RESYNC_DELIMITER);
      if (delim < 0) return frames;
      this.resyncing = false;
      start = delim + 1;
    }
    while (start < chunk.length) {
      const nl = chunk.indexOf(0x0a, start);
      const end = nl < 0 ? chunk.length : nl;
      const piece = chunk.subarray(start, end);
      if (this.discarding) {
        this.discardedBytes += piece.length;
      } else if (this.partBytes + piece.length > this.maxLineBytes) {
        this.discarding = true;
        this.discardedBytes = this.partBytes + piece.length;
        this.parts = [];
        this.partBytes = 0;
      } else {
        this.parts.push(Buffer.from(piece));
        this.partBytes += piece.length;
      }
      if (nl < 0) break;
      if (this.discarding) {
        frames.push({ kind: 'oversized', bytes: this.discardedBytes });
        this.discarding = false;
        this.discardedBytes = 0;
      } else {
        const bytes = Buffer.concat(this.parts);
        // A delimiter after its resync was over: the answer to an earlier sync-delimited that timed out, arriving late
        // behind its 0xFF (a slow guest answers them all at once). 0xFF is never part of UTF-8 text: the line is the JSON after it.
        let skip = 0;
        while (bytes[skip] === RESYNC_DELIMITER) skip++;
        const line = bytes.subarray(skip).toString('utf8').replace(/\r$/, '');
        this.parts = [];
        this.partBytes = 0;
        if (line.trim() !== '') frames.push(decodeLine(line));
      }
      start = nl + 1;
    }
    return frames;
  }
}

/**
 * JSON.parse, except that integers beyond 2^53 become BigInt instead of being
 * silently rounded: QMP reports 64-bit DMA window addresses such as
 * 0x0800000000000000 as plain JSON integers.
 */
export function parseJsonLossless(text: string): unknown {
  // Fast path: no run of 16 digits, so no integer that JSON.parse could round.
  if (!/\d{16}/.test(text)) return JSON.parse(text);
  let out = '';
  let last = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c)
        i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
      continue;
    }
    if (c === 0x22) {
      inString = true;
      continue;
    }
    if (c === 0x2d || (c >= 0x30 && c <= 0x39)) {
      let j = i + 1;
      while (j < text.length && /[0-9.eE+-]/.test(text[j]!)) j++;
      const token = text.slice(i, j);
      if (/^-?\d{16,}$/.test(token) && !Number.isSafeInteger(Number(token))) {
        out += `${text.slice(last, i)}"\\u0000bigint:${token}"`;
        last = j;
      }
      i = j - 1;
    }
  }
  if (last === 0) return JSON.parse(text);
  out += text.slice(last);
  return JSON.parse(out, (_k, v) => (typeof v === 'string' && v.startsWith(BIGINT_MARK) ? BigInt(v.slice(BIGINT_MARK.length)) : v));
}

const BIGINT_MARK = '\u0000bigint:';

export function decodeLine(line: string): Frame {
  let value: unknown;
  try {
    value = parseJsonLossless(line);
  } catch (err) {
    return { kind: 'malformed', raw: line, why: `not JSON (${(err as Error).message})` };
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    return { kind: 'malformed', raw: line, why: 'not a JSON object' };
  }
  return { kind: 'message', value: value as Record<string, unknown>, raw: line };
}

/** JSON.stringify that writes BigInt values as exact JSON integers. */
export function stringifyLossless(value: unknown): string {
  try {
    // Fast path: JSON.stringify throws on a BigInt, and only then is the replacer needed.
    return JSON.stringify(value);
  } catch (err) {
    if (!(err instanceof TypeError)) throw err;
  }
  let big = false;
  const text = JSON.stringify(value, (_k, v) => {
    if (typeof v !== 'bigint') return v;
    big = true;
    return `${BIGINT_MARK}${v.toString()}`;
  });
  return big ? text.replace(/"\\u0000bigint:(-?\d+)"/g, '$1') : text;
}
