import { describe, expect, it } from 'vitest';
import { PinnedPageSampler } from '../../src/probes/sampler.js';
import type { PinCounters, ProcCountersProbe } from '../../src/probes/proc.js';

/** A source that answers `answers` reads, then is lost (as an agent whose QEMU was killed). */
function probeLostAfter(answers: number): ProcCountersProbe {
  let reads = 0;
  return {
    async read() {
      if (reads++ >= answers) throw new Error('agent connection closed');
      return { follPinAcquired: 1, follPinReleased: 0, pinnedPages: 1, mlockedKb: 0 } satisfies PinCounters;
    },
  } as ProcCountersProbe;
}

describe('PinnedPageSampler.waitFor', () => {
  it('ends at once when its source is lost, not at the ceiling', async () => {
    const sampler = new PinnedPageSampler(Date.now());
    sampler.start('guest', probeLostAfter(2), { rateHz: 50 });
    const t0 = Date.now();
    const s = await sampler.waitFor('guest', () => false, { after: 0, timeoutMs: 30_000 });
    expect(s).toBeUndefined();
    expect(Date.now() - t0).toBeLessThan(5_000);
    expect(sampler.endedBecause('guest')).toBe('agent connection closed');
    // Asked again after the end: answered at once.
    expect(await sampler.waitFor('guest', () => false, { after: 0, timeoutMs: 30_000 })).toBeUndefined();
  });

  it('still resolves with the sample that satisfies it, and waits for a source not started yet', async () => {
    const sampler = new PinnedPageSampler(Date.now());
    const waiting = sampler.waitFor('host', () => true, { after: 0, timeoutMs: 30_000 });
    sampler.start('host', probeLostAfter(100), { rateHz: 50 });
    expect((await waiting)?.source).toBe('host');
    await sampler.stop();
  });
});
