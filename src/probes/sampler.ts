import { EventEmitter } from 'node:events';
import type { PinCounters, ProcCountersProbe } from './proc.js';
import { QmpTimeoutError } from '../protocol/errors.js';

/** One reading of one side's counters, `t` in ms since the run began. */
export interface Sample {
  t: number;
  source: 'host' | 'guest';
  /** The process whose VmLck/VmPin the sample includes, if any. */
  pid?: number;
  counters: PinCounters;
}

interface Loop {
  source: Sample['source'];
  running: boolean;
  done: Promise<void>;
  endedBecause?: string;
}

/**
 * Samples pinned-page counters on a timeline: the host from before QEMU is
 * launched until after it is gone, the guest (through its agent) while it
 * lives. Each source is read by its own loop at its own rate; a loop that
 * loses its source (the guest powered off) ends and says why.
 */
export class PinnedPageSampler extends EventEmitter {
  readonly samples: Sample[] = [];
  private readonly loops: Loop[] = [];
  /** Reads that took longer than the interval (the sampler could not keep up). */
  overruns = 0;
  /** Reads that timed out (a busy agent): a gap in the timeline, not the end of it. */
  gaps = 0;

  constructor(readonly t0: number) {
    super();
  }

  now(): number {
    return Date.now() - this.t0;
  }

  /** Starts a loop; `pid` is asked before every read (it may appear, change or vanish). */
  start(source: Sample['source'], probe: ProcCountersProbe, opts: { rateHz: number; pid?: () => number | undefined }): void {
    const loop: Loop = { source, running: true, done: Promise.resolve() };
    const interval = 1000 / opts.rateHz;
    loop.done = (async () => {
      let next = Date.now();
      while (loop.running) {
        const pid = opts.pid?.();
        try {
          const counters = await probe.read(pid);
          const s: Sample = { t: this.now(), source, counters, ...(pid ? { pid } : {}) };
          this.samples.push(s);
          this.emit('sample', s);
        } catch (err) {
          if (err instanceof QmpTimeoutError && loop.running) {
            this.gaps++;
            continue;
          }
          loop.endedBecause = (err as Error).message;
          loop.running = false;
          break;
        }
        next += interval;
        const wait = next - Date.now();
        if (wait < 0) {
          this.overruns++;
          next = Date.now();
        }
        await new Promise((r) => setTimeout(r, Math.max(0, wait)));
      }
      this.emit('ended', source);
    })();
    this.loops.push(loop);
  }

  async stop(source?: Sample['source']): Promise<void> {
    const loops = this.loops.filter((l) => !source || l.source === source);
    for (const l of loops) l.running = false;
    await Promise.all(loops.map((l) => l.done));
  }

  endedBecause(source: Sample['source']): string | undefined {
    return this.loops.find((l) => l.source === source)?.endedBecause;
  }

  of(source: Sample['source']): Sample[] {
    return this.samples.filter((s) => s.source === source);
  }

  /** Whether `source` was sampled and its loop has ended (stopped, or its source lost): no sample of it will come. */
  private ended(source: Sample['source']): boolean {
    const mine = this.loops.filter((l) => l.source === source);
    return mine.length > 0 && mine.every((l) => !l.running);
  }

  /**
   * Resolves with the first sample of `source` (after time `after`) that satisfies `ok`, or undefined at the timeout —
   * or at once when that source's loop has ended (a lab that died mid-step): waiting out the ceiling for a sample that
   * cannot come only delays the failure the caller reports (with endedBecause); or when `until` resolves.
   */
  waitFor(
    source: Sample['source'],
    ok: (c: PinCounters) => boolean,
    opts: { after: number; timeoutMs: number; until?: Promise<unknown> },
  ): Promise<Sample | undefined> {
    const seen = this.samples.find((s) => s.source === source && s.t >= opts.after && ok(s.counters));
    if (seen) return Promise.resolve(seen);
    if (this.ended(source)) return Promise.resolve(undefined);
    return new Promise((resolve) => {
      // Whoever knows the awaited sample will not come (the counters at rest) may end the wait before its ceiling.
      opts.until?.then(() => done(undefined));
      const done = (s: Sample | undefined) => {
        clearTimeout(timer);
        this.off('sample', onSample);
        this.off('ended', onEnded);
        resolve(s);
      };
      const onSample = (s: Sample) => {
        if (s.source === source && s.t >= opts.after && ok(s.counters)) done(s);
      };
      const onEnded = (ended: Sample['source']) => {
        if (ended === source && this.ended(source)) done(undefined);
      };
      const timer = setTimeout(() => done(undefined), opts.timeoutMs);
      this.on('sample', onSample);
      this.on('ended', onEnded);
    });
  }
}
