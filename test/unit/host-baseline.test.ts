import { describe, expect, it } from 'vitest';
import type { Sample } from '../../src/probes/sampler.js';
import type { ReleaseVerdict } from '../../src/probes/release.js';
import { baselineFromSamples } from '../../src/scenario/run/host-baseline.js';
import { baselineUncertainty } from '../../src/scenario/run/host-release.js';
import type { Judgement } from '../../src/scenario/run/release-judgements.js';

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

describe('a release judged against an uncertain baseline', () => {
  const j = { unit: 'kB', tolerance: 1024 } as Judgement;
  const v = (above: number) => ({ baseline: -62_768, final: -62_768 + above }) as ReleaseVerdict;
  it('is not judged when above it by no more than its spread, and fails (stays judged) above that', () => {
    expect(baselineUncertainty(v(40_000), j, 65_536)).toMatch(/^not judged: 40000 kB above the baseline, which could not be read/);
    // A 64 MiB leak over a 32 MiB spread is above every reading of the baseline: the lab's.
    expect(baselineUncertainty(v(65_536 + 32_768), j, 32_768)).toBeUndefined();
    // A baseline read while all held still has no spread: nothing changes.
    expect(baselineUncertainty(v(4096), j, undefined)).toBeUndefined();
  });
});
