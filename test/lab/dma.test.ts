import { describe, expect, it } from 'vitest';
import type { ScenarioReport } from '../../src/scenario/scenario.js';
import { judgedNotPassing, runScenarioCli } from '../helpers/lab.js';

/** `tcelab run dma-integrity [--set seedFaults=…] --json`: the report, its exit status and stderr. */
const dmaRun = (faults?: string) => runScenarioCli('dma-integrity', faults ? ['--set', `seedFaults=${faults}`] : []);

const notPassing = (r: ScenarioReport) =>
  r.checks
    .filter(judgedNotPassing)
    .map((c) => c.name)
    .sort();

const windowCases = (window: string, labels: string[]) => labels.map((l) => `${window} ${l}: the copy arrives intact`);

/**
 * Data that flows: the emulated edu, bound to vfio-pci in the real guest kernel, copies bytes with its own DMA
 * engine through the real sPAPR TCEs; every verdict is bytes compared, and every one is flipped by a seeded fault.
 */
describe('DMA through every window', () => {
  it('tcelab run dma-integrity, restored: edu configuration written back, BAR reachable, copies intact, permissions, UNMAP, one MSI', () => {
    // The machine's first lab boots cold and saves it: the one after it is restored, and that one is judged.
    let { report, status, stderr } = dmaRun();
    if (report.labStart?.how !== 'restored' && report.labStart?.saved) ({ report, status, stderr } = dmaRun());
    expect({ error: report.error, notPassing: report.checks.filter(judgedNotPassing) }, stderr.slice(-2000)).toEqual({
      error: undefined,
      notPassing: [],
    });
    expect(status).toBe(0);
    // QEMU migrates none of edu's state: the restored lab wrote its configuration back before the scenario began.
    expect(report.labStart).toMatchObject({ how: 'restored', configsRestored: [{ id: 'edu1', address: '0001:00:00.0' }] });
    expect(report.checks.find((c) => c.name.startsWith("edu's BAR0 is reachable"))).toMatchObject({
      status: 'pass',
      measured: '0x010000ed',
    });
    const copies = report.checks.filter((c) => c.name.endsWith(': the copy arrives intact'));
    expect(copies).toHaveLength(12);
    // Each copy really went RAM → device → RAM through the window's IOVAs, with edu's own DMA time.
    expect(report.checks.find((c) => c.name === '64K-page DDW across two TCEs: the copy arrives intact')!.detail).toMatch(
      /^IOVA 0x80000000000f800 → edu → 0x80000000020f800, 4032 bytes; DMA \d+ \+ \d+ ms$/,
    );
    expect(report.timings.filter((t) => t.step.endsWith('RAM → device → RAM'))).toHaveLength(12);
  }, 340_000);

  it('seeded faults flip exactly their checks: skipped UNMAP, swapped permissions, swapped interrupt requests', () => {
    const { report, status } = dmaRun('skip-unmap,perm-swapped,irq-swapped');
    expect(report.error).toBeUndefined();
    expect(notPassing(report)).toEqual(
      [
        'after UNMAP the device cannot write the page (sentinel unchanged)',
        'after UNMAP the device cannot read the page (reads zeros)',
        'read-only mapping: the device reads it: the copy arrives intact',
        'read-only mapping: the device cannot write it',
        'write-only mapping: the device writes it',
        'write-only mapping: the device cannot read it (reads zeros)',
        'the completion interrupt (MSI) arrives exactly once for a copy that asks for it',
        'no interrupt for a copy that does not ask for one',
      ].sort(),
    );
    expect(status).toBe(1);
  });

  it('seeded fault skip-config-restore: a restored edu left with the configuration QEMU restored (reset) is out of reach', () => {
    const { report, status } = dmaRun('skip-config-restore');
    expect(report.error).toBeUndefined();
    expect(report.labStart).toMatchObject({ how: 'restored', configsNotRestored: 'seeded fault skip-config-restore' });
    expect(notPassing(report)).toEqual(["edu's BAR0 is reachable: its id register reads edu's id"]);
    // Not read: the guest's access to an unassigned BAR machine-checks it (QEMU 10.0.13).
    expect(report.checks.find((c) => c.name.startsWith("edu's BAR0"))!.measured).toMatch(
      /^not read: BAR0 is unassigned .* \(reads 0x00000000\)/,
    );
    expect(status).toBe(1);
  });

  it('seeded faults flip exactly their checks: a source mapped elsewhere, a device without its 64-bit DMA mask', () => {
    const { report, status } = dmaRun('map-elsewhere,no-dma-mask');
    expect(report.error).toBeUndefined();
    const ddw = ['at 0', 'last 4 KiB of a TCE', 'across two TCEs'];
    expect(notPassing(report)).toEqual(
      [
        ...windowCases('32-bit window', ['at 0', 'mid-page']),
        'write-only mapping: the device writes it',
        'after the unreachable copies, a valid copy: the copy arrives intact',
        ...windowCases('64K-page DDW', [...ddw, 'mid-page']),
        ...windowCases('2M-page DDW', [...ddw, 'at 1 MiB']),
        "no alias: the 32-bit window at the DDW address's low 28 bits is untouched",
      ].sort(),
    );
    // Without the mask the destination's copy landed in the 32-bit window instead.
    expect(report.checks.find((c) => c.name.startsWith('no alias'))!.measured).toMatch(/^\d+ of 65536 bytes differ/);
    expect(status).toBe(1);
  });
});
