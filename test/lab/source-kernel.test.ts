import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { packageRoot } from '../../src/util/paths.js';
import { testRuntimeRoot } from '../helpers/lab.js';
import { liveLabQemuPids } from '../helpers/processes.js';
import { scratchDir } from '../helpers/scratch.js';

const cli = join(packageRoot, 'dist/cli/main.js');

/**
 * A kernel built from Debian's source with the lab fragment. The build is npm test's (`tcelab guest build --kernel
 * debian-source:trixie` before the suite): a cold build of the lab configuration takes 8–16 min with -j2 on this
 * machine kind (≈1050 compiles, an empty ccache), far more than this file may take; here it must be found built —
 * the run compiles nothing — and the lab must boot it and pass, with defect 1 (an unregistration that leaks its
 * pins) reproduced as known.
 */
describe('a kernel built from source', () => {
  it('prereg-accounting passes on debian-source:trixie, cold-booted, reusing the cached build', () => {
    const root = testRuntimeRoot();
    const results = scratchDir('res');
    const r = spawnSync(
      process.execPath,
      [cli, '--cold', 'run', 'prereg-accounting', '--kernel', 'debian-source:trixie', '--results', results],
      {
        env: { ...process.env, TCELAB_RUNTIME_DIR: root },
        encoding: 'utf8',
        timeout: 300_000,
      },
    );
    expect(r.status, r.stderr.slice(-3000)).toBe(0);
    // Found built: no make ran, no package list was fetched for the kernel.
    expect(r.stderr).not.toMatch(/make -j\d+ vmlinux modules|allnoconfig/);
    const report = JSON.parse(readFileSync(join(results, 'results.json'), 'utf8'));
    expect(report.kernel).toMatchObject({
      release: expect.stringMatching(/^6\.12\./),
      pageSize: 4096,
      source: { spec: 'debian-source:trixie', layout: 'source', build: { tree: expect.stringMatching(/^linux-source-6\.12 6\.12\./) } },
      config: { VFIO_IOMMU_SPAPR_TCE: 'm', VFIO_PCI: 'm', HOTPLUG_PCI_RPA: 'm', PPC_64K_PAGES: 'not set', KVM_BOOK3S_64_HV: 'm' },
      modules: { vfio: 'module', vfio_iommu_spapr_tce: 'module', vfio_pci: 'module', rpadlpar_io: 'module', kvm_hv: 'module' },
    });
    const statuses = report.checks.map((c: { status: string }) => c.status);
    expect(statuses).not.toContain('fail');
    // Defect 1 on 6.12: UNREGISTER_MEMORY of a mapped region answers 0 and leaks its pins.
    expect(report.checks.filter((c: { status: string; knownDefect?: string }) => c.status === 'known-defect').length).toBeGreaterThan(0);
    expect(report.labStart.how).toBe('cold');
    // /init's mounts and modules: a kernel booted with the hash MMU under TCG has no huge pages ("mounting hugetlbfs
    // on /dev/hugepages failed: No such device"), which the lab fragment's radix default prevents.
    const consoleLog = readFileSync(join(results, 'artifacts', 'console.log'), 'utf8');
    expect(consoleLog).not.toMatch(/mounting \S+ on \S+ failed|modprobe \S+ failed/);
    expect(report.spawnToInitMs).toBeGreaterThan(0);
    expect(liveLabQemuPids(root)).toEqual([]);
  });
});
