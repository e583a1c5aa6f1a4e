import { describe, expect, it } from 'vitest';
import { describeSignalled, parseInterruptState } from '../../src/snapshot/interrupt-state.js';

// `info pic` of QEMU 10.0.13 (TCG, power9, XIVE) on a guest restored from a snapshot saved with its virtio-serial
// interrupt in flight: the OS ring has NSR 80 and the guest never takes it.
const STUCK = `CPU[0000]:   QW   NSR CPPR IPB LSMFB ACK# INC AGE PIPR  W2
CPU[0000]: USER    00   00  00    00   00  00  00   00  00000000
CPU[0000]:   OS    80   ff  02    ff   ff  00  ff   06  80000400
CPU[0000]: POOL    00   00  00    00   00  00  00   00  00000000
CPU[0000]: PHYS    00   00  00    00   00  00  00   ff  00000000
  LISN         PQ    EISN     CPU/PRIO EQ
  00001300 MSI --    00000016   0/6     19/16384 @3830000 ^1 [ 80000017 ^00000000 ]
  00001301 MSI PQ    00000017   0/6     19/16384 @3830000 ^1 [ 80000017 ^00000000 ]
irqchip: emulated`;

describe('interrupts signalled to a CPU, from info pic', () => {
  it('reads a XIVE OS ring with NSR set as signalled, and one with NSR 00 as quiet', () => {
    const stuck = parseInterruptState(STUCK);
    expect(stuck.controller).toBe('xive');
    expect(stuck.signalled).toEqual([
      { cpu: '0', presenter: 'OS', row: 'CPU[0000]:   OS    80   ff  02    ff   ff  00  ff   06  80000400' },
    ]);
    expect(stuck.inFlight).toEqual(['00001301']);
    expect(describeSignalled(stuck)).toBe('CPU 0 OS (CPU[0000]: OS 80 ff 02 ff ff 00 ff 06 80000400); in flight: source 00001301');
    const quiet = parseInterruptState(STUCK.replace('OS    80   ff  02', 'OS    00   ff  00').replace('MSI PQ', 'MSI --'));
    expect(quiet).toEqual({ controller: 'xive', signalled: [], inFlight: [] });
  });

  it('reads XICS presenters by the source in their XIRR; an unknown wording is unknown, with nothing signalled', () => {
    const xics = 'CPU 0 XIRR=00001001 (0x5555) PP=ff MFRR=ff\nCPU 1 XIRR=ff000000 (0) PP=ff MFRR=ff\nICS 1000..1fff 0x55\n';
    expect(parseInterruptState(xics)).toEqual({
      controller: 'xics',
      signalled: [{ cpu: '0', presenter: 'ICP', row: 'CPU 0 XIRR=00001001 (0x5555) PP=ff MFRR=ff' }],
      inFlight: [],
    });
    expect(parseInterruptState('irqchip: in-kernel\n')).toEqual({ controller: 'unknown', signalled: [], inFlight: [] });
  });
});
