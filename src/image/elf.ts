/**
 * Just enough ELF64 little-endian parsing to find what a dynamically linked
 * guest binary needs: PT_INTERP and the DT_NEEDED sonames. Used to copy exactly
 * the shared libraries a binary needs into the initramfs, and to prove none is
 * missing, instead of trusting a hand-written list.
 */
export interface ElfDeps {
  interpreter: string | undefined;
  needed: string[];
  machine: number;
}

export const EM_PPC64 = 21;

export function readElfDeps(buf: Buffer): ElfDeps {
  if (buf.length < 64 || buf.readUInt32BE(0) !== 0x7f454c46) throw new Error('not an ELF file');
  if (buf[4] !== 2 || buf[5] !== 1) throw new Error('not a 64-bit little-endian ELF file');
  const machine = buf.readUInt16LE(18);
  const phoff = Number(buf.readBigUInt64LE(32));
  const phentsize = buf.readUInt16LE(54);
  const phnum = buf.readUInt16LE(56);
  let interpreter: string | undefined;
  let dynamic: { offset: number; size: number } | undefined;
  const loads: Array<{ vaddr: number; offset: number; filesz: number }> = [];
  for (let i = 0; i < phnum; i++) {
    const o = phoff + i * phentsize;
    const type = buf.readUInt32LE(o);
    const offset = Number(buf.readBigUInt64LE(o + 8));
    const vaddr = Number(buf.readBigUInt64LE(o + 16));
    const filesz = Number(buf.readBigUInt64LE(o + 32));
    if (type === 3) interpreter = buf.toString('utf8', offset, offset + filesz).replace(/\0.*$/s, '');
    if (type === 2) dynamic = { offset, size: filesz };
    if (type === 1) loads.push({ vaddr, offset, filesz });
  }
  const needed: string[] = [];
  if (dynamic) {
    const entries: Array<[bigint, bigint]> = [];
    for (let o = dynamic.offset; o + 16 <= dynamic.offset + dynamic.size; o += 16) {
      const tag = buf.readBigInt64LE(o);
      if (tag === 0n) break;
      entries.push([tag, buf.readBigUInt64LE(o + 8)]);
    }
    const strtabAddr = entries.find(([t]) => t === 5n)?.[1];
    if (strtabAddr !== undefined) {
      const seg = loads.find((l) => Number(strtabAddr) >= l.vaddr && Number(strtabAddr) < l.vaddr + l.filesz);
      if (!seg) throw new Error('DT_STRTAB is outside every PT_LOAD segment');
      const strtab = Number(strtabAddr) - seg.vaddr + seg.offset;
      for (const [tag, val] of entries) {
        if (tag !== 1n) continue;
        const start = strtab + Number(val);
        const end = buf.indexOf(0, start);
        needed.push(buf.toString('utf8', start, end));
      }
    }
  }
  return { interpreter, needed, machine };
}
