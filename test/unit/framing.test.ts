import { describe, expect, it } from 'vitest';
import { JsonLineDecoder } from '../../src/protocol/framing.js';

describe('JsonLineDecoder', () => {
  it('reassembles lines split across chunks and accepts CRLF', () => {
    const d = new JsonLineDecoder(1024);
    expect(d.push(Buffer.from('{"a"'))).toEqual([]);
    const frames = d.push(Buffer.from(':1}\r\n{"b":2}\n'));
    expect(frames.map((f) => (f.kind === 'message' ? f.value : f))).toEqual([{ a: 1 }, { b: 2 }]);
  });

  it('reports malformed lines and non-objects without throwing', () => {
    const d = new JsonLineDecoder(1024);
    const frames = d.push(Buffer.from('{nope\n[1,2]\n{"ok":true}\n'));
    expect(frames.map((f) => f.kind)).toEqual(['malformed', 'malformed', 'message']);
  });

  it('discards an oversized line up to its end and recovers', () => {
    const d = new JsonLineDecoder(16);
    const frames = [...d.push(Buffer.from(`{"x":"${'a'.repeat(40)}`)), ...d.push(Buffer.from('"}\n{"y":1}\n'))];
    expect(frames[0]).toEqual({ kind: 'oversized', bytes: 48 });
    expect(frames[1]).toMatchObject({ kind: 'message', value: { y: 1 } });
  });

  it('drops everything up to 0xFF while resyncing', () => {
    const d = new JsonLineDecoder(1024);
    d.push(Buffer.from('{"partial'));
    d.startResync();
    expect(d.push(Buffer.from('garbage\n{"stale":1}\n'))).toEqual([]);
    const frames = d.push(Buffer.concat([Buffer.from('x'), Buffer.from([0xff]), Buffer.from('{"return":7}\n')]));
    expect(frames).toMatchObject([{ kind: 'message', value: { return: 7 } }]);
  });

  it('reads the late answers of earlier resyncs, each behind its own 0xFF, as the messages they are', () => {
    // A slow guest answers three sync-delimited at once, after the client gave up on the first two and resynced.
    const d = new JsonLineDecoder(1024);
    d.startResync();
    const ff = Buffer.from([0xff]);
    const burst = Buffer.concat([
      ff,
      Buffer.from('{"return":1}\n'),
      ff,
      Buffer.from('{"return":2}\n'),
      ff,
      ff,
      Buffer.from('{"return":3}\n'),
    ]);
    expect(d.push(burst)).toMatchObject([
      { kind: 'message', value: { return: 1 } },
      { kind: 'message', value: { return: 2 } },
      { kind: 'message', value: { return: 3 } },
    ]);
  });
});

describe('parseJsonLossless', () => {
  it('keeps 64-bit integers exact as BigInt and leaves the rest alone', async () => {
    const { parseJsonLossless } = await import('../../src/protocol/framing.js');
    expect(parseJsonLossless('{"return": 576460752303423488}')).toEqual({ return: 576460752303423488n });
    expect(parseJsonLossless('{"a": 1, "b": -2.5e3, "c": "123456789012345678901", "d": [9007199254740991]}')).toEqual({
      a: 1,
      b: -2500,
      c: '123456789012345678901',
      d: [9007199254740991],
    });
    expect(parseJsonLossless('{"s": "quote \\" 18446744073709551615", "n": 18446744073709551615}')).toEqual({
      s: 'quote " 18446744073709551615',
      n: 18446744073709551615n,
    });
  });
});
