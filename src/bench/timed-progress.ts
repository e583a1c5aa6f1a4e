import type { Progress } from '../util/progress.js';

/** One step of a long operation as it ran: its label and how long it took. */
export interface TimedStep {
  label: string;
  ms: number;
}

/**
 * A Progress that shows what it is given (on stderr, as every command does) and keeps each step's duration: the
 * phases of a build, measured by the steps the library itself names, without timers of its own in the library.
 */
export class TimedProgress implements Progress {
  readonly steps: TimedStep[] = [];

  constructor(private readonly shown: Progress) {}

  async step<T>(label: string, fn: (update: (detail: string, fraction?: number) => void) => Promise<T>): Promise<T> {
    const t0 = performance.now();
    try {
      return await this.shown.step(label, fn);
    } finally {
      this.steps.push({ label, ms: performance.now() - t0 });
    }
  }

  info(line: string): void {
    this.shown.info(line);
  }

  /** The steps recorded since `from` (an index into steps), for one operation of several. */
  since(from: number): TimedStep[] {
    return this.steps.slice(from);
  }
}
