import { describe, expect, it } from 'vitest';
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { runScenario } from '../../src/scenario/runner.js';
import type { ScenarioReport } from '../../src/scenario/scenario.js';
import { resolveScenario } from '../../src/scenario/registry.js';
import { packageRoot } from '../../src/util/paths.js';
import { judgedNotPassing, testRuntimeRoot, runtimeDirsIn } from '../helpers/lab.js';
import { liveLabQemuPids } from '../helpers/processes.js';
import { cliOn, upLab } from '../helpers/up.js';
import { scratchDir } from '../helpers/scratch.js';

/**
 * The nested lab host against the real thing: the emulated lab's guest runs
 * Debian's qemu-system-ppc64 with the guest's edu passed through (vfio-pci),
 * and the guest kernel's VFIO sPAPR TCE v2 code pins the inner RAM. Run
 * exactly as a user runs it: `tcelab run nested-prereg-release`.
 */
describe('nested lab host', () => {
  // One run proves both: every check of the quit cycle passes, and the faults seeded into one cycle each (and into
  // the doctor and the agent's fd count) flip exactly the checks they name; the same checks pass in the other cycles.
  const SEEDED = 'doctor-wrong-qemu,inner-without-device,inner-not-paused,term-via-quit,agent-fd-leak';
  const FLIPS = [
    'doctor on the guest: QEMU binary',
    'kill: guest kernel pins = inner RAM pages (256 MiB)',
    'kill: inner QEMU VmLck covers its RAM',
    'term: inner machine created and paused (-S)',
    "term: the inner QEMU's SHUTDOWN event says host-signal",
    'agent: no pipe or relay left open after the inner labs',
  ];

  it('tcelab run nested-prereg-release: pins = inner RAM, released after quit/SIGTERM/SIGKILL; the fd holder named; seeded faults flip their checks', () => {
    const root = testRuntimeRoot();
    const results = scratchDir('res');
    const cli = spawnSync(
      process.execPath,
      [
        join(packageRoot, 'dist/cli/main.js'),
        'run',
        'nested-prereg-release',
        '--set',
        `seedFaults=${SEEDED}`,
        '--results',
        results,
        '--json',
      ],
      {
        encoding: 'utf8',
        env: { ...process.env, TCELAB_RUNTIME_DIR: root },
        timeout: 170_000,
      },
    );
    const report = JSON.parse(cli.stdout) as ScenarioReport;
    const check = (name: string) => {
      const c = report.checks.find((x) => x.name === name);
      if (!c) throw new Error(`no check "${name}" in ${report.checks.map((x) => x.name).join(' | ')}`);
      return c;
    };
    expect(report.error, cli.stderr.slice(-2000)).toBeUndefined();
    expect(
      report.checks
        .filter(judgedNotPassing)
        .map((c) => c.name)
        .sort(),
    ).toEqual([...FLIPS].sort());
    expect(cli.status).toBe(1);
    expect(report.profile).toBe('nested-lab-host');

    // doctor, run on the guest through the agent, found the device's group viable (and the absent QEMU absent).
    expect(check('doctor on the guest: QEMU binary').detail).toMatch(/qemu-system-ppc64-absent/);
    expect(report.checks.find((c) => /^doctor on the guest: IOMMU group \d+$/.test(c.name))?.detail).toMatch(/^viable: 0001:00:00\.0/);
    expect(check('inner QEMU passes 0001:00:00.0 through as hostdev0').measured).toBe('1234:11e8');
    // The kill cycle's inner QEMU had no device to pass through: nothing was pre-registered.
    expect(check('kill: guest kernel pins = inner RAM pages (256 MiB)').measured).toBe('0');
    // Started without -S, the machine runs (the guest's QEMU 10 with VOF and no kernel: "running").
    expect(check('term: inner machine created and paused (-S)').measured).not.toBe('prelaunch');
    expect(check("term: the inner QEMU's SHUTDOWN event says host-signal").measured).toBe('host-qmp-quit');

    for (const m of ['quit', 'term', 'kill']) {
      const release = check(`${m}: every pinned page released`);
      expect(release.pass).toBe(true);
      if (m === 'kill') continue;
      // 256 MiB of inner RAM in the guest's pages, exactly: pre-registration pins every page once.
      expect(check(`${m}: guest kernel pins = inner RAM pages (256 MiB)`).pass).toBe(true);
      expect(Number(check(`${m}: guest kernel pins = inner RAM pages (256 MiB)`).measured)).toBeGreaterThan(0);
      expect(Number(check(`${m}: inner QEMU VmLck covers its RAM`).measured)).toBeGreaterThanOrEqual(256 * 1024);
      if (m === 'quit') expect(check(`${m}: inner machine created and paused (-S)`).measured).toBe('prelaunch');
      const v = report.releases.find((r) => r.event === `inner QEMU ${m}`)!;
      expect(v.returned).toBe(true);
      expect(v.peak - v.baseline).toBeGreaterThan(0);
    }
    // The seeded fault: another process holds the inner QEMU's VFIO fds → NOT released, and the holder is named.
    const leak = report.releases.find((r) => r.event === 'inner QEMU quit (fds held)')!;
    expect(leak.returned).toBe(false);
    expect(leak.final - leak.baseline).toBe(leak.peak - leak.baseline);
    expect(check('seeded fault: the holder is named').measured).toMatch(
      /^pid \d+ \(tcelab-agent "\/usr\/sbin\/tcelab-agent", parent \d+\): fd \d+ → \/dev\/vfio\/\d+ \(group\), fd \d+ → \/dev\/vfio\/vfio \(container\)/,
    );
    expect(report.releases.find((r) => r.event === 'holder exit')!.returned).toBe(true);
    // Unbinding the device from vfio-pci takes its group out of the container: the pins go though the holder lives.
    expect(report.releases.find((r) => r.event === 'device unbound (holder alive)')!.returned).toBe(true);
    expect(check("seeded fault, unbind: the holder's group fd now points at a deleted group").measured).toMatch(
      /: fd \d+ → \/dev\/vfio\/\d+ \(deleted\) \(group\), fd \d+ → \/dev\/vfio\/vfio \(container\)$/,
    );

    // The timeline tells the story; the inner lab's own transcripts are among the artifacts.
    const svg = readFileSync(join(results, 'timeline.svg'), 'utf8');
    for (const phase of ['quit: inner QEMU shutdown requested (quit)', 'kill: inner QEMU exited', 'seeded fault: holder killed'])
      expect(svg).toContain(phase);
    for (const f of ['qmp-transcript.log', 'qemu-stderr.log', 'lab.json'])
      expect(existsSync(join(results, 'artifacts', 'inner', 'quit', f))).toBe(true);
    expect(readFileSync(join(results, 'artifacts', 'inner', 'term', 'qmp-transcript.log'), 'utf8')).toMatch(/query-status/);
    expect(cli.stdout + cli.stderr).not.toMatch(/\n\s+at .*\(.*:\d+:\d+\)/);
    expect(liveLabQemuPids(root)).toEqual([]);
    // A failed run (the seeded faults' checks) keeps its lab's runtime dir as artifacts: one, the outer lab's.
    expect(runtimeDirsIn(root)).toHaveLength(1);
  });

  it("an inner QEMU that dies at start (QEMU's default 1 GiB window) fails the run with QEMU's own words and the fix; no QEMU left, artifacts kept", () => {
    const root = testRuntimeRoot();
    const results = scratchDir('res');
    const profile = JSON.parse(readFileSync(join(packageRoot, 'qemu-configs', 'nested-lab-host.json'), 'utf8'));
    delete profile.inner.phbs[0].dmaWindowMiB;
    const path = join(results, 'nested-1g.json');
    writeFileSync(path, JSON.stringify(profile));
    const cli = spawnSync(
      process.execPath,
      [join(packageRoot, 'dist/cli/main.js'), 'run', 'nested-prereg-release', '--profile', path, '--results', results],
      {
        encoding: 'utf8',
        env: { ...process.env, TCELAB_RUNTIME_DIR: root },
        timeout: 170_000,
      },
    );
    expect(cli.status).toBe(1);
    expect(cli.stdout).toMatch(
      new RegExp(
        'FAIL scenario ran to the end: measured start QEMU in the guest: it exited \\(SIG\\w+\\) before QMP was up: ' +
          '.*Failed to create SPAPR window: Invalid argument',
      ),
    );
    expect(cli.stdout).toMatch(/set dmaWindowMiB on that PHB/);
    expect(cli.stdout + cli.stderr).not.toMatch(/\n\s+at .*\(.*:\d+:\d+\)/);
    // The outer lab was still torn down properly and judged.
    expect(cli.stdout).toMatch(/release: host unattributedPinnedPages back to baseline/);
    const inner = readdirSync(join(results, 'artifacts', 'inner-runtime'));
    expect(readFileSync(join(results, 'artifacts', 'inner-runtime', inner[0]!, 'qemu-stderr.log'), 'utf8')).toMatch(/DMA mapping failed/);
    expect(liveLabQemuPids(root)).toEqual([]);
  });

  it('tcelab doctor --inner boots the guest and reports, through the agent, the passed-through device and its IOMMU group as viable', () => {
    const root = testRuntimeRoot();
    const cli = spawnSync(
      process.execPath,
      [join(packageRoot, 'dist/cli/main.js'), 'doctor', '--profile', 'nested-lab-host', '--inner', '--json'],
      {
        encoding: 'utf8',
        env: { ...process.env, TCELAB_RUNTIME_DIR: root },
        timeout: 120_000,
      },
    );
    expect(cli.status, cli.stderr.slice(-2000)).toBe(0);
    const [outer, inner] = JSON.parse(cli.stdout) as Array<{
      host: string;
      profile: string;
      canRun: boolean;
      findings: Array<{ check: string; status: string; detail: string }>;
    }>;
    expect(outer).toMatchObject({ host: 'host', profile: 'nested-lab-host', canRun: true });
    expect(inner).toMatchObject({ host: 'the guest of nested-lab-host', profile: 'nested-lab-host.inner', canRun: true });
    const find = (prefix: string) => inner!.findings.find((f) => f.check.startsWith(prefix));
    expect(find('QEMU binary')).toMatchObject({ status: 'ok', detail: expect.stringMatching(/^qemu-system-ppc64 10\./) });
    expect(find('/dev/vfio')?.status).toBe('ok');
    expect(find('device 0001:00:00.0')?.status).toBe('ok');
    expect(find('IOMMU group')).toMatchObject({ status: 'ok', detail: expect.stringMatching(/^viable: 0001:00:00\.0/) });
    expect(find('RLIMIT_MEMLOCK')?.status).toBe('ok');
    expect(liveLabQemuPids(root)).toEqual([]);
    expect(runtimeDirsIn(root)).toEqual([]);
  });

  it('scenario steps drive the inner lab too (nested-steps: inner-launch, inner-shutdown, adopt-fds)', async () => {
    const root = testRuntimeRoot();
    const resolved = (await resolveScenario('nested-steps'))!;
    const report = await runScenario(resolved.def, { resultsDir: scratchDir('res'), runtimeRoot: root });
    expect(report.error).toBeUndefined();
    expect(report.checks.filter(judgedNotPassing)).toEqual([]);
    const pins = report.checks.filter((c) => /expect-guest-pins/.test(c.name)).map((c) => c.measured);
    // Launched, released by SIGTERM; launched again, held by the adopted fds after quit.
    expect(pins).toEqual(['65536', '65536', '65536']);
    expect(report.releases.filter((r) => r.source === 'guest').map((r) => [r.event, r.returned])).toEqual([
      ['step 4: inner-shutdown l2 via term', true],
      ['step 14: stop-worker (holder)', true],
    ]);
    expect(liveLabQemuPids(root)).toEqual([]);
    expect(runtimeDirsIn(root)).toEqual([]);
  });

  it('tcelab up nested-lab-host keeps the inner QEMU running; tcelab qmp inner talks to it through the agent; shutdown leaves nothing', async () => {
    const root = testRuntimeRoot();
    const cli = (...args: string[]) => cliOn(root)(args);
    // No lab yet: a clear error, no stack trace.
    const none = cli('qmp', 'inner', 'query-status');
    expect(none.status).not.toBe(0);
    expect(none.stderr).toMatch(/find a running lab: none under/);
    expect(none.stderr).not.toMatch(/\n\s+at /);

    const up = await upLab('nested-lab-host', root);
    const status = cli('qmp', 'inner', 'query-status');
    expect(status.status, status.stderr).toBe(0);
    expect(JSON.parse(status.stdout)).toEqual({ status: 'prelaunch', running: false });
    const lab = JSON.parse(cli('hotplug', 'status').stdout) as { inner: { qemuPid: number; running: boolean; status: string } };
    expect(lab.inner).toMatchObject({ running: true, status: 'prelaunch', qemuVersion: expect.stringMatching(/^10\./) });
    const bad = cli('qmp', 'inner', 'no-such-command');
    expect(bad.status).toBe(1);
    expect(bad.stderr).toMatch(/CommandNotFound/);
    expect(await up.shutdown()).toBe(0);
    expect(liveLabQemuPids(root)).toEqual([]);
    expect(runtimeDirsIn(root)).toEqual([]);
  });
});
