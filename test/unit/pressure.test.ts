import { describe, expect, it } from 'vitest';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describePressure, pressureOverRun, pressureTotal, readPressure } from '../../src/probes/pressure.js';
import { scratchDir } from '../helpers/scratch.js';

const psi = (some: number, full: number) =>
  `some avg10=0.00 avg60=0.00 avg300=0.00 total=${some}\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=${full}\n`;

describe('machine pressure (PSI)', () => {
  it('reads the totals, and reads nothing where the kernel has no PSI', () => {
    expect(pressureTotal(psi(12, 7), 'full')).toBe(7);
    const dir = scratchDir('psi');
    writeFileSync(join(dir, 'cpu'), psi(1_000_000, 0));
    writeFileSync(join(dir, 'io'), psi(500_000, 250_000));
    writeFileSync(join(dir, 'memory'), psi(0, 0));
    expect(readPressure(dir)).toEqual({ cpuSomeUs: 1_000_000, ioSomeUs: 500_000, ioFullUs: 250_000, memorySomeUs: 0 });
    expect(readPressure('/nonexistent')).toBeUndefined();
  });

  it('gives each stall as a share of the run, in words', () => {
    const start = { cpuSomeUs: 1_000_000, ioSomeUs: 0, ioFullUs: 0, memorySomeUs: 0 };
    const end = { cpuSomeUs: 5_100_000, ioSomeUs: 300_000, ioFullUs: 100_000, memorySomeUs: 0 };
    const p = pressureOverRun(start, end, 10_000);
    expect(p).toEqual({ durationMs: 10_000, cpuSome: 0.41, ioSome: 0.03, ioFull: 0.01, memorySome: 0 });
    expect(describePressure(p)).toBe('tasks waited for a CPU 41% of the run, stalled on I/O 3% (all of them 1%), on memory 0%');
  });
});
