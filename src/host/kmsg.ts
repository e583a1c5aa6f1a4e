import { closeSync, constants, openSync, readSync } from 'node:fs';

/** One record of the kernel's log as /dev/kmsg gives it: "prio,seq,usec,flags[,…];message". */
interface KmsgRecord {
  seq: number;
  usec: number;
  message: string;
}

/** /dev/kmsg escapes what is not printable as \xNN (a record's own newlines too). */
const unescapeKmsg = (s: string) => s.replace(/\\x([0-9a-f]{2})/gi, (_, h: string) => String.fromCharCode(Number.parseInt(h, 16)));

function parseRecord(text: string): KmsgRecord | undefined {
  const semi = text.indexOf(';');
  if (semi < 0) return undefined;
  const [, seq, usec] = text.slice(0, semi).split(',');
  // Continuation lines of a record (" SUBSYSTEM=…", " DEVICE=…") are its dictionary, not its message.
  const message = text.slice(semi + 1).split('\n')[0] ?? '';
  return { seq: Number(seq), usec: Number(usec), message: unescapeKmsg(message) };
}

/**
 * Every record in the kernel's log buffer now, oldest first. Each read() of /dev/kmsg returns one record; opened
 * non-blocking, EAGAIN says there is no more, and EPIPE that the oldest records were overwritten while reading (the
 * next read goes on from the oldest one left).
 */
function readAllRecords(): KmsgRecord[] {
  const fd = openSync('/dev/kmsg', constants.O_RDONLY | constants.O_NONBLOCK);
  const buf = Buffer.alloc(16 * 1024);
  const out: KmsgRecord[] = [];
  try {
    for (;;) {
      let n: number;
      try {
        n = readSync(fd, buf, 0, buf.length, null);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'EPIPE') continue;
        if (code === 'EAGAIN') break;
        throw err;
      }
      if (n <= 0) break;
      const r = parseRecord(buf.toString('utf8', 0, n));
      if (r) out.push(r);
    }
  } finally {
    closeSync(fd);
  }
  return out;
}

/** A record as dmesg prints it ("[   12.345678] message"), the form the kernel-log scanner reads. */
const asDmesgLine = (r: KmsgRecord) => `[${(r.usec / 1e6).toFixed(6).padStart(12)}] ${r.message}`;

/**
 * This machine's kernel log from a point on: what the kernel logged since the cursor was opened (a run's start), read
 * from /dev/kmsg. Opening needs the right to read the kernel log (root, CAP_SYSLOG, or kernel.dmesg_restrict=0): where
 * it is refused, `open` says why instead.
 */
export class KmsgCursor {
  private constructor(private readonly afterSeq: number) {}

  static open(): KmsgCursor | { refused: string } {
    try {
      return new KmsgCursor(readAllRecords().at(-1)?.seq ?? -1);
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      return { refused: `/dev/kmsg could not be read (${e.code ?? e.message})` };
    }
  }

  /** The lines logged since the cursor was opened, as dmesg prints them. */
  linesSince(): string[] {
    return readAllRecords()
      .filter((r) => r.seq > this.afterSeq)
      .map(asDmesgLine);
  }
}
