import { describe, expect, it } from 'vitest';
import type { Sample } from '../../src/probes/sampler.js';
import { baselineFromSamples } from '../../src/scenario/run/host-baseline.js';

/** 20 Hz host samples; `locked(t)` is the system-wide Mlocked and `seen(t)` what the neighbour scan accounts. */
function samples(ms: number, locked: (t: number) => number, seen: (t: number) => number): Sample[] {
  const out: Sample[] = [];
  for (let t = 0; t <= ms; t += 50) {
    const mlockedKb = locked(t);
    const neighbourLockedKb = seen(t);
    out.push({
      t,
      source: 'host',
      counters: {
        follPinAcquired: 0,
        follPinReleased: 0,
        pinnedPages: 100,
        mlockedKb,
        neighbourLockedKb,
        neighbourPinnedKb: 0,
        unattributedMlockedKb: mlockedKb - neighbourLockedKb,
        unattributedPinnedPages: 100,
      },
    });
  }
  return out;
}

describe('host baseline', () => {
  it('reads the lab part where everything held still', () => {
    const b = baselineFromSamples(
      samples(
        1000,
        () => 50_000,
        () => 80_000,
      ),
    );
    expect(b.sample.counters.unattributedMlockedKb).toBe(-30_000);
    expect(b.spread).toEqual({});
  });

  it('a neighbour locking at the end (the scan lags): the reading of the last window that held still', () => {
    // From 2 s on a neighbour locks 100 MiB a second; the scan sees it 250 ms late.
    const growth = (t: number) => Math.max(0, t - 2000) * 100;
    const b = baselineFromSamples(
      samples(
        3000,
        (t) => 50_000 + growth(t),
        (t) => 80_000 + growth(Math.floor(t / 250) * 250 - 250),
      ),
    );
    expect(b.sample.counters.unattributedMlockedKb).toBe(-30_000);
    expect(b.spread).toEqual({});
  });

  it('never still: the lowest reading, and how far the highest was above it', () => {
    // A neighbour that locks and unlocks 32 MiB every 150 ms, seen by a scan every 250 ms.
    const cycle = (t: number) => (Math.floor(t / 150) % 2 ? 32_768 : 0);
    const b = baselineFromSamples(
      samples(
        5000,
        (t) => 50_000 + cycle(t),
        (t) => 80_000 + cycle(Math.floor(t / 250) * 250),
      ),
    );
    expect(b.sample.counters.unattributedMlockedKb).toBe(-30_000 - 32_768);
    expect(b.spread).toEqual({ unattributedMlockedKb: 2 * 32_768 });
    // FOLL_PIN held still all along: exact.
    expect(b.sample.counters.unattributedPinnedPages).toBe(100);
  });
});
