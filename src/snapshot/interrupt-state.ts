/**
 * What HMP `info pic` says about interrupts signalled to a CPU and not yet taken. A machine saved in that instant
 * restores with the interrupt signalled in the interrupt controller's state but never raised on the CPU: the restored
 * guest takes no external interrupt again (seen with QEMU 10.0 under TCG, XIVE: the OS ring NSR stays 80, the
 * virtio-serial source stays PQ, and the agent answers only when its poll() times out, once a second). So a save waits
 * for an instant with nothing signalled, and a restore refuses a snapshot that has something signalled.
 */

/** One CPU's interrupt presenter with an exception signalled (XIVE: a ring's NSR; XICS: the XISR of its XIRR). */
export interface SignalledInterrupt {
  cpu: string;
  /** The XIVE ring (OS, POOL, PHYS, USER), or 'ICP' for XICS. */
  presenter: string;
  /** The row as QEMU printed it, for the message. */
  row: string;
}

export interface InterruptState {
  /** Which controller's rows were read; 'unknown' when none was recognised (e.g. an in-kernel irqchip's wording). */
  controller: 'xive' | 'xics' | 'unknown';
  signalled: SignalledInterrupt[];
  /** XIVE sources notified and not yet EOI'd (P set, not masked), by LISN: the interrupts in flight. */
  inFlight: string[];
}

/** One reader per controller: a row it recognises, and whether that row has an exception signalled. */
const PRESENTER_ROWS: {
  controller: 'xive' | 'xics';
  row: RegExp;
  signalled: (m: RegExpMatchArray) => Omit<SignalledInterrupt, 'row'> | undefined;
}[] = [
  {
    // hw/intc/xive.c xive_tctx_pic_print_info: "CPU[0000]:   OS    80   ff  02 …" — QW, then NSR first.
    controller: 'xive',
    row: /^CPU\[([0-9a-f]+)\]:\s+(USER|OS|POOL|PHYS)\s+([0-9a-f]{2})\s/i,
    signalled: (m) => (m[3] === '00' ? undefined : { cpu: String(Number.parseInt(m[1], 16)), presenter: m[2] }),
  },
  {
    // hw/intc/xics.c icp_pic_print_info: "CPU 0 XIRR=00000000 (…) PP=ff MFRR=ff" — the low 24 bits are the source.
    controller: 'xics',
    row: /^CPU (\d+) XIRR=([0-9a-f]{8})\b/i,
    signalled: (m) => ((Number.parseInt(m[2], 16) & 0xffffff) === 0 ? undefined : { cpu: m[1], presenter: 'ICP' }),
  },
];

/** hw/intc/xive.c xive_source_pic_print_info / spapr_xive_pic_print_info: "  00001301 MSI P-    00000017 …", M when masked. */
const XIVE_SOURCE_ROW = /^([0-9a-f]{8}) (?:MSI|LSI) ([-P])[-Q]\s+(M?)/i;

export function parseInterruptState(infoPic: string): InterruptState {
  let controller: InterruptState['controller'] = 'unknown';
  const signalled: SignalledInterrupt[] = [];
  const inFlight: string[] = [];
  for (const line of infoPic.split(/\r?\n/).map((l) => l.trim())) {
    const source = line.match(XIVE_SOURCE_ROW);
    if (source && source[2] === 'P' && source[3] !== 'M') inFlight.push(source[1]);
    for (const reader of PRESENTER_ROWS) {
      const m = line.match(reader.row);
      if (!m) continue;
      controller = reader.controller;
      const s = reader.signalled(m);
      if (s) signalled.push({ ...s, row: line });
    }
  }
  return { controller, signalled, inFlight };
}

/** "CPU 0 OS (CPU[0000]: OS 80 ff …); in flight: source 00001301", for a message. */
export function describeSignalled(state: InterruptState): string {
  const cpus = state.signalled.map((s) => `CPU ${s.cpu} ${s.presenter} (${s.row.replace(/\s+/g, ' ')})`).join('; ');
  return `${cpus}${state.inFlight.length ? `; in flight: source ${state.inFlight.join(', ')}` : ''}`;
}
