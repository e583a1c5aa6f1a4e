import { describe, expect, it } from 'vitest';
import { existsSync, readFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import type { ScenarioReport } from '../../src/scenario/scenario.js';
import { packageRoot } from '../../src/util/paths.js';
import { KVM_VFIO_RELEASE_WARNING } from '../../src/scenario/procedures/kvm-vfio-early-exit.js';
import { judgedNotPassing, runtimeDirsIn, testRuntimeRoot } from '../helpers/lab.js';
import { liveLabQemuPids } from '../helpers/processes.js';
import { upLab } from '../helpers/up.js';
import { scratchDir } from '../helpers/scratch.js';

/** `tcelab run <args> --json` on a runtime root of its own: the report, the exit status and stderr. */
function tcelabRun(args: string[]): { report: ScenarioReport; status: number | null; stderr: string; root: string; results: string } {
  const root = testRuntimeRoot();
  const results = scratchDir('res');
  const cli = spawnSync(process.execPath, [join(packageRoot, 'dist/cli/main.js'), 'run', ...args, '--results', results, '--json'], {
    encoding: 'utf8',
    env: { ...process.env, TCELAB_RUNTIME_DIR: root },
    timeout: 170_000,
  });
  if (!cli.stdout.trim()) throw new Error(`tcelab run ${args.join(' ')} printed no report: ${cli.stderr.slice(-3000)}`);
  return { report: JSON.parse(cli.stdout) as ScenarioReport, status: cli.status, stderr: cli.stderr, root, results };
}

const checkOf = (report: ScenarioReport, name: string) => {
  const c = report.checks.find((x) => x.name === name);
  if (!c) throw new Error(`no check "${name}" in ${report.checks.map((x) => x.name).join(' | ')}`);
  return c;
};

const KVM_CHECKS = [
  'KVM: the TCE tables of the passed-through device are in the kernel',
  'KVM: the VFIO group is attached to its in-kernel TCE tables',
  "KVM: QEMU handled none of the guest's TCE updates for the device",
];

/**
 * The KVM lab host, emulated, against the real thing: the emulated lab's guest, given nested HV, loads kvm_hv and
 * runs Debian's QEMU under KVM with its edu passed through; the inner guest boots the base image with the agent and
 * is the lab under test. Run exactly as a user runs it.
 */
describe('KVM lab host', () => {
  it('tcelab run kvm-tce-path: the inner guest maps through both windows, and the host kernel handled every TCE update', () => {
    const { report, status, stderr, root } = tcelabRun(['kvm-tce-path']);
    expect({ error: report.error, notPassing: report.checks.filter(judgedNotPassing) }, stderr.slice(-2000)).toEqual({
      error: undefined,
      notPassing: [],
    });
    expect(status).toBe(0);
    expect(report.profile).toBe('kvm-lab-host');
    // The lab host is a guest with its own kernel and QEMU; the lab under test (the inner guest) runs in it.
    expect(report.labHost).toMatchObject({ profile: 'kvm-lab-host', qemuVersion: expect.stringMatching(/^\d+\.\d+\.\d+$/) });
    // The host guest restores from its saved machine (kvm_hv loaded after the restore); the first run of a cache saves it.
    const hostStart = report.labHost?.labStart;
    expect(hostStart?.how === 'restored' || hostStart?.saved !== undefined, JSON.stringify(hostStart)).toBe(true);
    for (const name of KVM_CHECKS) expect(checkOf(report, name).pass).toBe(true);
    // Every window of the device's PHB (the 32-bit one and the DDW) was an in-kernel table with the group attached.
    expect(checkOf(report, KVM_CHECKS[0]!).measured).toMatch(/^liobn 0x80000100 fd \d+, liobn 0x80000101 fd \d+$/);
    // Host verdicts judged in the host guest: the inner guest's 512 MiB pre-registered there, all of it given back.
    expect(Number(checkOf(report, 'host: FOLL_PIN pages while running ≈ guest RAM (VFIO pre-registration)').measured)).toBe(131072);
    expect(checkOf(report, 'host: pinned pages (FOLL_PIN) back to baseline after QEMU exit').detail).toMatch(
      /on a lab host that runs nothing but this lab/,
    );
    expect(checkOf(report, 'host kernel logged no panic, Oops, soft lockup, hard lockup, BUG, WARNING, RCU stall, hung task').pass).toBe(
      true,
    );
    expect(liveLabQemuPids(root)).toEqual([]);
    expect(runtimeDirsIn(root)).toEqual([]);
  });

  it("faults of the lab host (a process that keeps the inner QEMU's VFIO fds, one that locks memory, a WARNING) fail exactly the host verdicts", () => {
    const { report, status, root } = tcelabRun(['kvm-tce-path', '--set', 'seedFaults=host-holder,host-warning']);
    expect(report.error).toBeUndefined();
    expect(
      report.checks
        .filter(judgedNotPassing)
        .map((c) => c.name)
        .sort(),
    ).toEqual(
      [
        'host: pinned pages (FOLL_PIN) back to baseline after QEMU exit',
        'host: Mlocked back to baseline after QEMU exit',
        'host: no process of the lab outlives QEMU',
        'host kernel logged no panic, Oops, soft lockup, hard lockup, BUG, WARNING, RCU stall, hung task',
      ].sort(),
    );
    expect(checkOf(report, 'host: no process of the lab outlives QEMU').measured).toMatch(/→ \/dev\/vfio\/vfio \(container\)/);
    expect(checkOf(report, 'host: no process of the lab outlives QEMU').measured).toMatch(
      /mem-locker "tcelab-agent lock 4 600".*VmLck 4096 kB/,
    );
    expect(status).toBe(1);
    expect(liveLabQemuPids(root)).toEqual([]);
  });

  it("a host guest saved with kvm_hv loaded and restored: its inner KVM guest cannot start, with QEMU's words (seeded)", () => {
    const { report, status, root } = tcelabRun(['kvm-tce-path', '--set', 'seedFaults=load-kvm-hv-before-save']);
    // Restored, whether this run saved the machine first (then it was launched again from the save) or an earlier one did.
    expect(report.labHost?.labStart?.how).toBe('restored');
    // QEMU keeps the partition table kvm_hv registered in spapr->nested.ptcr and does not migrate it: H_ENTER_NESTED
    // answers H_NOT_AVAILABLE (3), which the host kernel passes to the inner QEMU as the exit's hardware reason.
    expect(report.error).toMatch(/QEMU stopped the machine: internal-error \(KVM: unknown exit, hardware reason 3\).*H_NOT_AVAILABLE/);
    expect(report.checks.filter(judgedNotPassing).map((c) => c.name)).toEqual(['scenario ran to the end']);
    expect(status).toBe(1);
    expect(liveLabQemuPids(root)).toEqual([]);
  });

  it('tcelab up kvm-lab-host: tcelab exec and console reach the inner KVM guest through the host guest; shutdown leaves nothing', async () => {
    const lab = await upLab('kvm-lab-host');
    try {
      // The inner guest runs under KVM: its device tree names the hypervisor.
      const hv = lab.cli(['exec', '--inner', '--', 'cat', '/proc/device-tree/hypervisor/compatible']);
      expect(hv.status, hv.stderr).toBe(0);
      expect(hv.stdout).toMatch(/linux,kvm/);
      const host = lab.cli(['exec', '--', 'cat', '/sys/module/kvm_hv/refcnt']);
      expect([host.status, Number(host.stdout)]).toEqual([0, expect.any(Number)]);
      expect(Number(host.stdout)).toBeGreaterThan(0);
      const shown = lab.cli(['console', '--inner', '--no-follow']);
      expect(shown.status, shown.stderr).toBe(0);
      expect(shown.stdout).toMatch(/TCELAB-INIT-READY kernel=/);
      // The inner console is read-only (its QEMU runs in the host guest, which gives it no input), and says so.
      expect(shown.stderr).toMatch(/the inner guest's console is read-only/);
    } finally {
      expect(await lab.shutdown()).toBe(0);
    }
    expect(liveLabQemuPids(lab.root)).toEqual([]);
    expect(runtimeDirsIn(lab.root)).toEqual([]);
  });

  it('defect 3: a VMM that exits before attaching its VFIO group makes the host kernel warn (known defect); attach-first flips it', () => {
    const defect = tcelabRun(['kvm-vfio-early-exit']);
    expect(defect.report.error, defect.stderr.slice(-2000)).toBeUndefined();
    expect(defect.report.checks.filter(judgedNotPassing).map((c) => [c.name, c.status])).toEqual([
      ['host kernel: releasing a kvm-vfio device whose group was never attached to a TCE table does not warn', 'known-defect'],
      ['guest kernel logged no panic, Oops, soft lockup, hard lockup, BUG, WARNING, RCU stall, hung task', 'known-defect'],
    ]);
    expect(defect.status).toBe(0);
    expect(
      checkOf(defect.report, 'host kernel: releasing a kvm-vfio device whose group was never attached to a TCE table does not warn')
        .measured,
    ).toMatch(KVM_VFIO_RELEASE_WARNING);
    expect(checkOf(defect.report, 'the inner QEMU exits after realizing its VFIO device, before the TCE attach').measured).toMatch(
      /64 ?kiB/,
    );
    expect(liveLabQemuPids(defect.root)).toEqual([]);

    // The reproducer: exported from the run, tried in a fresh host guest that runs no tcelab agent, it reproduces.
    const bundle = join(defect.results, 'repro');
    const cli = (...args: string[]) =>
      spawnSync(process.execPath, [join(packageRoot, 'dist/cli/main.js'), 'repro', ...args], {
        encoding: 'utf8',
        env: { ...process.env, TCELAB_RUNTIME_DIR: defect.root },
        timeout: 170_000,
      });
    const exported = cli('export', defect.results, '--out', bundle);
    expect(exported.status, exported.stderr.slice(-2000)).toBe(0);
    expect(readFileSync(join(bundle, 'REPORT.txt'), 'utf8')).toMatch(KVM_VFIO_RELEASE_WARNING);
    const tried = cli('try', bundle, '--profile', 'kvm-lab-host');
    expect(tried.status, tried.stderr.slice(-2000)).toBe(1);
    expect(tried.stdout).toMatch(/^ok 2 the VMM realizes its vfio-pci device and exits before the machine resets$/m);
    expect(tried.stdout).toMatch(/^not ok 3 guest kernel logged no .*WARNING/m);
    expect(liveLabQemuPids(defect.root)).toEqual([]);

    // The same run with the group attached first: the defect is not reached, the exit check fails, the WARNING check passes.
    const seeded = tcelabRun(['kvm-vfio-early-exit', '--set', 'seedFaults=attach-first']);
    expect(seeded.report.error, seeded.stderr.slice(-2000)).toBeUndefined();
    expect(seeded.report.checks.filter(judgedNotPassing).map((c) => c.name)).toEqual([
      'the inner QEMU exits after realizing its VFIO device, before the TCE attach',
    ]);
    expect(seeded.status).toBe(1);
    expect(liveLabQemuPids(seeded.root)).toEqual([]);
    expect(existsSync(join(seeded.results, 'results.json'))).toBe(true);
  });
});
