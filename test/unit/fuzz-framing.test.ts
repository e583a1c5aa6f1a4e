import { describe, expect, it } from 'vitest';
import { JsonLineDecoder, parseJsonLossless, stringifyLossless } from '../../src/protocol/framing.js';
import { rng, mutate } from '../helpers/fuzz.js';

const BASES = [
  '{"execute":"qom-get","arguments":{"path":"/machine/peripheral/phb1","property":"dma64_win_addr"},"id":"tcelab-7"}',
  '{"return": 576460752303423488, "id": "tcelab-8"}',
  '{"event": "DEVICE_DELETED", "data": {"device": "hp0", "path": "/machine/peripheral/hp0"}, "timestamp": {"seconds": 1, "microseconds": 2}}',
  '{"error": {"class": "GenericError", "desc": "Property \\"x\\" not found"}}',
];

describe('framing fuzz (seed 20261123, 5000 cases)', () => {
  it('never throws, types every frame, bounds memory, and recovers on the next good line', () => {
    const r = rng(20261123);
    const d = new JsonLineDecoder(4096);
    let frames = 0;
    for (let i = 0; i < 5000; i++) {
      const line = mutate(BASES[i % BASES.length]!, r);
      const big = r() < 0.02 ? Buffer.alloc(5000 + Math.floor(r() * 5000), 0x61) : Buffer.alloc(0);
      const data = Buffer.concat([line, big, Buffer.from('\n')]);
      if (r() < 0.05) d.startResync();
      // Random chunking: the decoder must not care where reads split.
      let off = 0;
      while (off < data.length) {
        const n = 1 + Math.floor(r() * 64);
        for (const f of d.push(data.subarray(off, off + n))) {
          frames++;
          expect(['message', 'malformed', 'oversized']).toContain(f.kind);
          if (f.kind === 'message') expect(typeof f.value).toBe('object');
        }
        off += n;
      }
    }
    expect(frames).toBeGreaterThan(3000);
    // A resync byte and a good line: back in step.
    const tail = d.push(Buffer.concat([Buffer.from([0xff]), Buffer.from('\n{"return":{},"id":"ok"}\n')]));
    expect(tail.at(-1)).toMatchObject({ kind: 'message', value: { return: {}, id: 'ok' } });
  });

  it('lossless JSON round-trips every BigInt and number', () => {
    const r = rng(7);
    for (let i = 0; i < 2000; i++) {
      const big = BigInt(Math.floor(r() * 2 ** 31)) * BigInt(Math.floor(r() * 2 ** 31)) * 4n + 2n ** 53n;
      const v = { a: big, b: Math.floor(r() * 1000), c: `${big}`, d: [big, -big] };
      expect(parseJsonLossless(stringifyLossless(v))).toEqual(v);
    }
  });
});
