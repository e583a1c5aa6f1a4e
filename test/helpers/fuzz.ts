/** A seeded PRNG (mulberry32): fuzz runs are repeatable. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** One mutated line from a valid request: flipped, dropped, inserted or repeated bytes, 0xFF, newlines, truncation. */
export function mutate(base: string, r: () => number): Buffer {
  const b = [...Buffer.from(base)];
  const ops = 1 + Math.floor(r() * 4);
  for (let k = 0; k < ops; k++) {
    const at = Math.floor(r() * (b.length + 1));
    switch (Math.floor(r() * 7)) {
      case 0:
        b[at] = Math.floor(r() * 256);
        break;
      case 1:
        b.splice(at, 1 + Math.floor(r() * 5));
        break;
      case 2:
        b.splice(at, 0, Math.floor(r() * 128));
        break;
      case 3:
        b.splice(at, 0, 0xff);
        break;
      case 4:
        b.splice(at, 0, 0x0a);
        break;
      case 5:
        b.splice(Math.floor(b.length * r()));
        break;
      case 6:
        b.splice(at, 0, ...Buffer.from('"'.repeat(1 + Math.floor(r() * 3)) + '{'.repeat(Math.floor(r() * 40))));
        break;
    }
  }
  return Buffer.from(b.filter((x) => x !== undefined));
}
