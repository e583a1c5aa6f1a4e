import { readFileSync } from 'node:fs';

/**
 * The machine's pressure stall totals (/proc/pressure, PSI), in µs since boot: how long tasks waited for a CPU, and
 * stalled on I/O or memory ("some": at least one task; "full": every task that wanted to run).
 */
export interface PressureTotals {
  cpuSomeUs: number;
  ioSomeUs: number;
  ioFullUs: number;
  memorySomeUs: number;
}

/** What the machine went through during a run, as shares of its duration (0..1): why a lab may have been slow. */
export interface PressureOverRun {
  durationMs: number;
  cpuSome: number;
  ioSome: number;
  ioFull: number;
  memorySome: number;
}

/** The `total=` of one line ("some" or "full") of a /proc/pressure file. */
export function pressureTotal(text: string, line: 'some' | 'full'): number | undefined {
  const m = new RegExp(`^${line} .*\\btotal=(\\d+)`, 'm').exec(text);
  return m ? Number(m[1]) : undefined;
}

/** This machine's totals now; undefined where the kernel has no PSI (then nothing is reported). */
export function readPressure(dir = '/proc/pressure'): PressureTotals | undefined {
  try {
    const [cpu, io, memory] = ['cpu', 'io', 'memory'].map((f) => readFileSync(`${dir}/${f}`, 'utf8'));
    const totals = {
      cpuSomeUs: pressureTotal(cpu!, 'some'),
      ioSomeUs: pressureTotal(io!, 'some'),
      ioFullUs: pressureTotal(io!, 'full'),
      memorySomeUs: pressureTotal(memory!, 'some'),
    };
    return Object.values(totals).every((v) => v !== undefined) ? (totals as PressureTotals) : undefined;
  } catch {
    return undefined;
  }
}

export function pressureOverRun(start: PressureTotals, end: PressureTotals, durationMs: number): PressureOverRun {
  const share = (k: keyof PressureTotals) => (durationMs > 0 ? Math.round(((end[k] - start[k]) / 1000 / durationMs) * 1000) / 1000 : 0);
  return {
    durationMs,
    cpuSome: share('cpuSomeUs'),
    ioSome: share('ioSomeUs'),
    ioFull: share('ioFullUs'),
    memorySome: share('memorySomeUs'),
  };
}

/** One line for a report: "tasks waited for a CPU 41% of the run, stalled on I/O 3% (all of them 1%), on memory 0%". */
export function describePressure(p: PressureOverRun): string {
  const pct = (x: number) => `${Math.round(x * 100)}%`;
  return (
    `tasks waited for a CPU ${pct(p.cpuSome)} of the run, stalled on I/O ${pct(p.ioSome)} ` +
    `(all of them ${pct(p.ioFull)}), on memory ${pct(p.memorySome)}`
  );
}
