import { describe, expect, it } from 'vitest';
import { PollTimeoutError, pollUntil } from '../../src/util/poll.js';
import { TcelabError } from '../../src/util/errors.js';

/** A probe that answers undefined `misses` times, then `value`; counts its calls. */
function probeAfter<T>(misses: number, value: T): { probe: () => Promise<T | undefined>; calls: () => number } {
  let n = 0;
  return { probe: async () => (n++ < misses ? undefined : value), calls: () => n };
}

describe('pollUntil: probe until there is a value, or say what was waited for and how long', () => {
  it('resolves with the first value, probing once when it is there at once', async () => {
    const p = probeAfter(0, 'ready');
    expect(await pollUntil('x', p.probe, { timeoutMs: 1000, intervalMs: 5 })).toBe('ready');
    expect(p.calls()).toBe(1);
  });

  it('probes again after each miss, synchronous probes too; false and 0 are values', async () => {
    const p = probeAfter(3, 0);
    expect(await pollUntil('x', p.probe, { timeoutMs: 1000, intervalMs: 1 })).toBe(0);
    expect(p.calls()).toBe(4);
    let n = 0;
    expect(await pollUntil('x', () => (++n < 3 ? undefined : false), { timeoutMs: 1000, intervalMs: 0 })).toBe(false);
    expect(n).toBe(3);
  });

  it('pauses intervalMs between probes', async () => {
    const p = probeAfter(2, true);
    const t0 = Date.now();
    await pollUntil('x', p.probe, { timeoutMs: 1000, intervalMs: 30 });
    expect(Date.now() - t0).toBeGreaterThanOrEqual(55);
  });

  it('gives up after timeoutMs with a TcelabError that says what, how long, how long it usually takes, and the last state', async () => {
    const p = probeAfter(Number.POSITIVE_INFINITY, 'never');
    const t0 = Date.now();
    const err = await pollUntil('the migration to finish', p.probe, {
      timeoutMs: 60,
      intervalMs: 10,
      usualMs: 20,
      lastSeen: () => 'status active',
      hint: 'look at the QMP transcript',
    }).catch((e: unknown) => e);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(60);
    expect(err).toBeInstanceOf(PollTimeoutError);
    expect(err).toBeInstanceOf(TcelabError);
    const e = err as PollTimeoutError;
    expect(e.what).toBe('wait for the migration to finish');
    expect(e.why).toMatch(/^gave up after \d+ ms \(it usually takes 20 ms\); last: status active$/);
    expect(e.waitedMs).toBeGreaterThanOrEqual(60);
    expect(e.usualMs).toBe(20);
    expect(e.hint).toBe('look at the QMP transcript');
    expect(p.calls()).toBeGreaterThan(1);
  });

  it('says seconds and minutes for long waits, and nothing about usual or last when not given', () => {
    expect(new PollTimeoutError('a', 60_020, undefined, undefined).why).toBe('gave up after 60 s');
    expect(new PollTimeoutError('a', 4_250, 400, undefined).why).toBe('gave up after 4.3 s (it usually takes 400 ms)');
    expect(new PollTimeoutError('a', 15 * 60_000, undefined, 'held by pid 7').why).toBe('gave up after 15 min; last: held by pid 7');
  });

  it("names this machine's usual for the same wait (the median of those that ended in time) when none is given", async () => {
    const what = `a wait seen before ${Math.random()}`;
    for (const misses of [1, 2, 3]) await pollUntil(what, probeAfter(misses, true).probe, { timeoutMs: 1000, intervalMs: 10 });
    const err = (await pollUntil(what, probeAfter(Number.POSITIVE_INFINITY, 1).probe, { timeoutMs: 40, intervalMs: 10 }).catch(
      (e: unknown) => e,
    )) as PollTimeoutError;
    expect(err.usualMs).toBeGreaterThanOrEqual(15);
    expect(err.usualMs).toBeLessThan(1000);
    expect(err.why).toMatch(/\(it usually takes \d+ ms\)/);
  });

  it('probes at least once, even with no time to wait', async () => {
    const p = probeAfter(0, 'now');
    expect(await pollUntil('x', p.probe, { timeoutMs: 0, intervalMs: 10 })).toBe('now');
  });

  it("ends the wait with the probe's own error", async () => {
    let n = 0;
    const probe = async () => {
      if (++n === 2) throw new Error('migration failed');
      return undefined;
    };
    await expect(pollUntil('x', probe, { timeoutMs: 1000, intervalMs: 1 })).rejects.toThrow('migration failed');
    expect(n).toBe(2);
  });

  it("stops at once when the signal aborts, with the signal's reason, and probes no more", async () => {
    const ac = new AbortController();
    const p = probeAfter(Number.POSITIVE_INFINITY, 'never');
    setTimeout(() => ac.abort(new Error('interrupted')), 20);
    const t0 = Date.now();
    await expect(pollUntil('x', p.probe, { timeoutMs: 10_000, intervalMs: 1000, signal: ac.signal })).rejects.toThrow('interrupted');
    expect(Date.now() - t0).toBeLessThan(500);
    expect(p.calls()).toBe(1);
    await expect(pollUntil('x', p.probe, { timeoutMs: 10_000, intervalMs: 1, signal: ac.signal })).rejects.toThrow('interrupted');
    expect(p.calls()).toBe(1);
  });
});
