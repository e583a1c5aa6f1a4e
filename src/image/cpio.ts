/**
 * Writer for the "newc" cpio format the kernel unpacks as an initramfs. Written
 * here rather than shelling out to cpio(1) so that archives are reproducible
 * (fixed mtime, uid 0, sorted entries) and can hold device nodes without root.
 */
export type CpioEntry =
  | { path: string; type: 'dir'; mode?: number }
  | { path: string; type: 'file'; data: Buffer; mode?: number }
  | { path: string; type: 'symlink'; target: string }
  | { path: string; type: 'char'; major: number; minor: number; mode?: number };

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;
const S_IFCHR = 0o020000;

function hex8(n: number): string {
  return n.toString(16).padStart(8, '0');
}

function pad4(len: number): Buffer {
  return Buffer.alloc((4 - (len % 4)) % 4);
}

export function writeCpio(entries: CpioEntry[], mtime = 0): Buffer {
  const chunks: Buffer[] = [];
  let ino = 1;
  const sorted = [...entries].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  const emit = (name: string, mode: number, data: Buffer, rdevMajor = 0, rdevMinor = 0, nlink = 1) => {
    const nameBuf = Buffer.from(`${name}\0`, 'utf8');
    const header =
      '070701' +
      hex8(name === 'TRAILER!!!' ? 0 : ino++) +
      hex8(mode) +
      hex8(0) +
      hex8(0) +
      hex8(nlink) +
      hex8(mtime) +
      hex8(data.length) +
      hex8(0) +
      hex8(0) +
      hex8(rdevMajor) +
      hex8(rdevMinor) +
      hex8(nameBuf.length) +
      hex8(0);
    const h = Buffer.from(header, 'ascii');
    chunks.push(h, nameBuf, pad4(h.length + nameBuf.length), data, pad4(data.length));
  };
  for (const e of sorted) {
    const name = e.path.replace(/^\/+/, '');
    if (!name || name.includes('\0')) throw new Error(`cpio: invalid path ${JSON.stringify(e.path)}`);
    switch (e.type) {
      case 'dir':
        emit(name, S_IFDIR | (e.mode ?? 0o755), Buffer.alloc(0), 0, 0, 2);
        break;
      case 'file':
        emit(name, S_IFREG | (e.mode ?? 0o644), e.data);
        break;
      case 'symlink':
        emit(name, S_IFLNK | 0o777, Buffer.from(e.target, 'utf8'));
        break;
      case 'char':
        emit(name, S_IFCHR | (e.mode ?? 0o600), Buffer.alloc(0), e.major, e.minor);
        break;
    }
  }
  emit('TRAILER!!!', 0, Buffer.alloc(0));
  return Buffer.concat(chunks);
}

/** Reads a newc archive back (used by tests and `tcelab guest inspect`). */
export function readCpio(buf: Buffer): Array<{ name: string; mode: number; data: Buffer; rdevMajor: number; rdevMinor: number }> {
  const out = [];
  let off = 0;
  while (off + 110 <= buf.length) {
    const magic = buf.toString('ascii', off, off + 6);
    if (magic !== '070701') throw new Error(`cpio: bad magic at offset ${off}`);
    const field = (i: number) => parseInt(buf.toString('ascii', off + 6 + i * 8, off + 14 + i * 8), 16);
    const mode = field(1);
    const size = field(6);
    const rdevMajor = field(9);
    const rdevMinor = field(10);
    const nameSize = field(11);
    const nameStart = off + 110;
    const name = buf.toString('utf8', nameStart, nameStart + nameSize - 1);
    let dataStart = nameStart + nameSize;
    dataStart += (4 - (dataStart % 4)) % 4;
    if (name === 'TRAILER!!!') break;
    out.push({ name, mode, data: buf.subarray(dataStart, dataStart + size), rdevMajor, rdevMinor });
    off = dataStart + size;
    off += (4 - (off % 4)) % 4;
  }
  return out;
}
