import { describe, expect, it } from 'vitest';

import { runScenario } from '../../src/scenario/runner.js';
import { findProcedure } from '../../src/scenario/registry.js';
import { testRuntimeRoot } from '../helpers/lab.js';
import { liveLabQemuPids } from '../helpers/processes.js';
import { scratchDir } from '../helpers/scratch.js';

/**
 * Every verdict can fail: each row seeds faults into a real run (the real
 * guest kernel answers; only what the scenario asks of it changes) and lists
 * exactly the checks that must flip to FAIL. The README's table of seeded
 * faults is this table. Checks flipped by the automatic verdicts' own faults
 * (guest balance, kernel log, host attribution) are in verdicts.test.ts.
 */
const SEEDED_FAULT_RUNS: Array<{ scenario: string; options: Record<string, string | number>; flips: string[] }> = [
  {
    scenario: 'prereg-accounting',
    options: { sizeMiB: 16, seedFaults: 'register-extra-mib,second-register-fresh,unknown-is-registered,ranges-valid,unregister-other' },
    flips: [
      'VmLck grows by exactly 16 MiB',
      'FOLL_PIN acquired grows by exactly 16 MiB of pages',
      'pinned pages (acquired − released) grow by the same',
      'registering the same region again in the container',
      'unregistering a region that was never registered',
      'registering a misaligned range (offset 1)',
      'registering a range whose size is not a page multiple',
      'unregistering an unmapped 8 MiB region',
      'its pins are released',
      'its VmLck is returned',
      // register-extra-mib on a kernel with defect 1: the orphaned region is 17 MiB, not the 16 MiB the defect explains.
      'the orphaned region keeps its pins while the process lives',
      'guest: pinned pages back to the agent-up baseline before shutdown',
    ],
  },
  {
    scenario: 'guest-release',
    options: { sizeMiB: 16, seedFaults: 'exit-with-holder,close-group-early,holder-survives' },
    flips: [
      'case 1: pins released after the worker exits',
      'case 2: pins still held after close(container) alone (the group holds it)',
      'case 3: pins released once the holder exits',
      // (the stopped holder's pins are still released at the end: unbinding the device takes its group out of the container)
    ],
  },
  {
    scenario: 'guest-release',
    options: { sizeMiB: 16, seedFaults: 'no-holder' },
    flips: ['case 3: seeded leak detected: pins NOT released while a child holds the fds', 'case 3: the holder is named'],
  },
  {
    scenario: 'ddw-windows',
    options: { seedFaults: 'window-4k-as-64k,remove-wrong-window,unmap-elsewhere' },
    flips: [
      'unmap it from the 64K-page window',
      'unmap it from the 4K-page window',
      'host view shows exactly the 64K-page window',
      'map ordinary 4K-page memory into the 64K-page window',
      'remove the 4K-page window',
      'host view after removing the 4K-page window: only the default window',
      // The 4K-page window left behind holds one of the two table slots.
      'windows beyond max_dynamic_windows_supported (2, the default one included) fail with ENOSPC',
      'host view holds the default window plus the ones created',
      'host view after removing them: only the default window',
      // window-4k-as-64k lets the 64 KiB region be mapped; its unregister then hits defect 1 (returns 0 while mapped): its
      // 16 pages are never put, and destroy_context() warns when the container drops the worker's mm.
      'guest: pinned pages back to the agent-up baseline before shutdown',
      'guest kernel logged no panic, Oops, soft lockup, hard lockup, BUG, WARNING, RCU stall, hung task',
    ],
  },
  {
    scenario: 'ddw-windows',
    // Two faults that each take DDW away, in one run: the PHB's (the host's side) and the container's (v1, the guest's side).
    // Alone, phb-without-ddw leaves "container reports DDW support" passing and reports 4294967295 (-1) windows.
    options: { seedFaults: 'phb-without-ddw,container-v1' },
    flips: [
      'container reports DDW support',
      'max dynamic windows',
      'host PHB has ddw=on',
      'host and guest agree on the DDW page-size mask',
      'create a 64K-page 64-bit window of 1024 MiB',
      'create a 4K-page 64-bit window of 256 MiB',
      'windows beyond max_dynamic_windows_supported (0, the default one included) fail with ENOSPC',
    ],
  },
  {
    scenario: 'ddw-windows',
    options: { seedFaults: 'map-beyond-window,window-before-look' },
    flips: [
      'host view before: only the default 32-bit window',
      'map 2 MiB of hugetlb memory into the 64K-page window',
      'map 2 MiB of 4K-page memory into the 4K-page window',
    ],
  },
  {
    scenario: 'registration-soak',
    // 10 cycles, each one measured: a leak of one per cycle is a slope of 100 per 100 cycles, far above the thresholds.
    // (Each measured point of a leaking run waits out the 3 s its pins are given to settle: fewer points, a shorter run.)
    options: { cycles: 10, seedFaults: 'leak-registration,leak-fd,leak-window' },
    flips: [
      'soak: guest pinned pages per 100 cycles',
      'soak: worker VmLck per 100 cycles',
      'soak: worker file descriptors per 100 cycles',
      'soak: host DMA windows per 100 cycles',
    ],
  },
  {
    scenario: 'registration-soak',
    // 300 cycles: the least the controller's RSS is judged over. A leak every measured cycle (every 15) is a slope of
    // about 7 fds and 27 MiB per 100 cycles, far above the thresholds (0.5 and 2 MiB).
    options: { cycles: 300, seedFaults: 'leak-controller-fd,leak-controller-memory' },
    flips: ['soak: controller file descriptors per 100 cycles', 'soak: controller RSS per 100 cycles'],
  },
  {
    scenario: 'shutdown-release',
    options: { via: 'quit', sizeMiB: 16, seedFaults: 'register-extra-mib,no-window' },
    flips: ['guest: pins held while running = registered pages', 'host: the 64-bit window is live in QEMU'],
  },
];

describe('seeded faults flip exactly the checks they name', () => {
  for (const row of SEEDED_FAULT_RUNS) {
    it(`${row.scenario} --set seedFaults=${row.options.seedFaults}`, async () => {
      const root = testRuntimeRoot();
      const report = await runScenario(findProcedure(row.scenario)!, {
        resultsDir: scratchDir('res'),
        runtimeRoot: root,
        options: row.options,
      });
      const failed = report.checks.filter((c) => c.status === 'fail').map((c) => c.name);
      expect(failed.sort()).toEqual([...row.flips].sort());
      expect(report.passed).toBe(false);
      expect(liveLabQemuPids(root)).toEqual([]);
    });
  }
});
