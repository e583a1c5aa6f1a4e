import { describe, expect, it } from 'vitest';
import { parseVmstat, parseKbFields, parseMemlockLimit, ProcCountersProbe } from '../../src/probes/proc.js';
import { LocalHost } from '../../src/host/local-host.js';

describe('/proc parsers', () => {
  it('parses vmstat, meminfo/status and limits', () => {
    expect(parseVmstat('nr_free_pages 100\nnr_foll_pin_acquired 4096\nnr_foll_pin_released 10\n').get('nr_foll_pin_acquired')).toBe(4096);
    const status = parseKbFields('Name:\tqemu\nVmLck:\t  16384 kB\nVmPin:\t       0 kB\nThreads:\t4\n');
    expect(status.get('VmLck')).toBe(16384);
    expect(status.get('Threads')).toBe(4);
    expect(parseKbFields('Mlocked:           1024 kB\n').get('Mlocked')).toBe(1024);
    expect(parseMemlockLimit('Max locked memory         8388608              8388608              bytes\n')).toEqual({
      soft: 8388608,
      hard: 8388608,
    });
    expect(parseMemlockLimit('Max locked memory         unlimited            unlimited            bytes\n')).toEqual({
      soft: Infinity,
      hard: Infinity,
    });
  });

  it('reads this machine’s counters and this process’s status', async () => {
    const c = await new ProcCountersProbe(new LocalHost()).read(process.pid);
    expect(c.follPinAcquired).toBeGreaterThanOrEqual(c.follPinReleased);
    expect(c.vmLckKb).toBeGreaterThanOrEqual(0);
    const gone = await new ProcCountersProbe(new LocalHost()).read(2 ** 22 + 1);
    expect(gone.vmLckKb).toBeUndefined();
  });
});
