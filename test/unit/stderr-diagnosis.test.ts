import { describe, expect, it } from 'vitest';
import { explainingLines, knownCauseHint } from '../../src/qemu/stderr-diagnosis.js';

// What the inner QEMU of the nested lab printed when its PHB kept QEMU's default 1 GiB DMA window.
const aborted = `qemu-system-ppc64: vfio: Cannot reset device 0001:00:00.0, no available reset mechanism.
qemu-system-ppc64: Failed to create a window, ret = -1 (Invalid argument)
qemu-system-ppc64: Failed to create SPAPR window: Invalid argument
qemu: hardware error: vfio: DMA mapping failed, unable to continue
CPU #0:
NIP 0000000000000100   LR 0000000000000000 CTR 0000000000000000 XER 0000000000000000 CPU#0
 CFAR 0000000000000000 LPCR 0000000000020008
 PTCR 0000000000000000   DAR 0000000000000000  DSISR 0000000000000000
`;

describe('QEMU stderr diagnosis', () => {
  it("picks QEMU's own error lines over a register dump, and skips known harmless warnings", () => {
    expect(explainingLines(aborted)).toBe(
      'qemu-system-ppc64: Failed to create a window, ret = -1 (Invalid argument) | qemu-system-ppc64: Failed to ' +
        'create SPAPR window: Invalid argument | qemu: hardware error: vfio: DMA mapping failed, unable to continue',
    );
    expect(knownCauseHint(aborted)).toMatch(/dmaWindowMiB/);
  });

  it('falls back to the last lines when QEMU printed none of its own', () => {
    expect(explainingLines('a\nb\nc\nd')).toBe('b | c | d');
    expect(explainingLines('')).toBe('(no stderr)');
    expect(knownCauseHint('qemu-system-ppc64: -m 1T: cannot set up guest memory')).toBeUndefined();
  });
});
