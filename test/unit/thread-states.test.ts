import { describe, expect, it } from 'vitest';
import { LocalHost } from '../../src/host/local-host.js';
import { describeThreadStates, parseStatTail, threadStates } from '../../src/probes/thread-states.js';

describe('thread states', () => {
  it('parses a stat line whose comm holds spaces and parentheses', () => {
    const tail = parseStatTail('4242 (qemu (main) x) D 1 4242 4242 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 5 0');
    expect(tail?.[0]).toBe('D');
    expect(Number(tail?.[11]) + Number(tail?.[12])).toBe(10);
  });

  it('describes what each thread is doing, and a process that is gone', async () => {
    const states = await threadStates(new LocalHost(), process.pid);
    expect(states.length).toBeGreaterThan(0);
    expect(states.map((t) => t.tid)).toContain(process.pid);
    expect(describeThreadStates(states)).toMatch(/\[\d+\] (running|sleeping)/);
    expect(describeThreadStates(await threadStates(new LocalHost(), 2 ** 22 + 1))).toBe('the process is gone');
    expect(describeThreadStates([{ tid: 7, comm: 'qemu-system-ppc', state: 'D', wchan: 'folio_wait_bit_common', cpuTicks: 12 }])).toBe(
      'qemu-system-ppc[7] in uninterruptible wait (I/O or a fault) in folio_wait_bit_common, 12 ticks of CPU',
    );
  });
});
