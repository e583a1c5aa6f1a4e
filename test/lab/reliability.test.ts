import { describe, expect, it } from 'vitest';
import { spawn, spawnSync, execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync, mkdirSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { runScenario } from '../../src/scenario/runner.js';
import { writeReportFiles } from '../../src/report/write.js';
import { resolveScenario } from '../../src/scenario/registry.js';
import { packageRoot } from '../../src/util/paths.js';
import { liveLabQemuPids } from '../helpers/processes.js';
import { testRuntimeRoot, runtimeDirsIn, emulatedLabInputs } from '../helpers/lab.js';
import { Lab } from '../../src/lab/lab.js';
import { LiveServer } from '../../src/live/live-server.js';
import type { Progress } from '../../src/util/progress.js';
import type { ScenarioReport } from '../../src/scenario/scenario.js';
import { scratchDir } from '../helpers/scratch.js';

const cli = join(packageRoot, 'dist/cli/main.js');

/** Starts `tcelab run …`, waits for a stderr line matching `when`, sends `signal`, and returns what is left. */
async function interrupt(args: string[], when: RegExp, signal: NodeJS.Signals) {
  const root = testRuntimeRoot();
  const child = spawn(process.execPath, [cli, 'run', ...args, '--results', scratchDir('res')], {
    env: { ...process.env, TCELAB_RUNTIME_DIR: root },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let err = '';
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) =>
    child.on('exit', (code, sig) => r({ code, signal: sig })),
  );
  await new Promise<void>((resolve, reject) => {
    child.stderr.on('data', (d: Buffer) => {
      err += d.toString();
      if (when.test(err)) resolve();
    });
    // A run that ended on its own says why in its FAIL lines (the last 1000 characters are its teardown).
    const failures = () =>
      err
        .split('\n')
        .filter((l) => /\bFAIL\b|error|what to do/i.test(l))
        .join('\n');
    child.on('exit', () => reject(new Error(`exited before ${when}: ${failures()}\n…\n${err.slice(-1000)}`)));
    setTimeout(() => reject(new Error(`never saw ${when}: ${err.slice(-1000)}`)), 120_000);
  });
  const killedAt = Date.now();
  child.kill(signal);
  const exit = await exited;
  // QEMU dies with its controller, SIGKILL included (parent-death signal).
  const deadline = Date.now() + 5000;
  while (liveLabQemuPids(root).length && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  return { root, exit, qemuLeft: liveLabQemuPids(root), stderr: err, exitMs: Date.now() - killedAt };
}

describe('no orphans when the controller is interrupted', () => {
  const phases = [
    // --cold: a real boot to interrupt (a restored lab is up before a signal could land in it).
    { phase: 'boot', args: ['emulated', '--cold'], when: /boot the guest to init/ },
    { phase: 'hotplug', args: ['ddw-hotplug'], when: /round 1: host QOM of the hot-plugged PHB/ },
    { phase: 'registration', args: ['registration-soak', '--set', 'cycles=100000'], when: /soak: \d+\/100000 cycles/ },
    // The inner QEMU of a nested lab host is up and holds its pins: it dies with the guest.
    { phase: 'a nested lab', args: ['nested-prereg-release'], when: /PASS quit: inner machine created and paused/ },
  ];
  for (const { phase, args, when } of phases) {
    // SIGINT and SIGTERM take the same path (abortingOnSignals) and differ only in the exit code: SIGTERM is
    // proven once, during the boot, to keep the suite's time.
    const signals = phase === 'boot' ? (['SIGINT', 'SIGTERM', 'SIGKILL'] as const) : (['SIGINT', 'SIGKILL'] as const);
    for (const signal of signals) {
      it(`${signal} during ${phase}`, async () => {
        const r = await interrupt(args, when, signal);
        expect(r.qemuLeft).toEqual([]);
        if (signal === 'SIGKILL') {
          expect(r.exit.signal).toBe('SIGKILL');
          // The next start sweeps what the dead controller left: artifacts kept, nothing live.
          const swept = spawnSync(process.execPath, [cli, 'sweep', '--json'], {
            env: { ...process.env, TCELAB_RUNTIME_DIR: r.root },
            encoding: 'utf8',
          });
          expect(JSON.parse(swept.stdout).length).toBe(1);
        } else {
          expect(r.exit.code).toBe(signal === 'SIGINT' ? 130 : 143);
          expect(r.stderr).toMatch(new RegExp(`${signal} received, tearing the lab down`));
        }
        const left = runtimeDirsIn(r.root);
        // Only kept artifacts dirs remain, with logs and without live sockets.
        for (const d of left) {
          expect(readdirSync(d).filter((f) => f.endsWith('.sock'))).toEqual([]);
          expect(existsSync(join(d, 'console.log'))).toBe(true);
        }
        expect(left.filter((d) => /\/lab-[^/]+$/.test(d) && signal === 'SIGKILL')).toEqual([]);
        if (phase === 'a nested lab' && signal !== 'SIGKILL') {
          // The inner lab's transcripts are kept inside the outer lab's artifacts.
          const innerRoot = join(left[0]!, 'inner-runtime');
          const innerDirs = readdirSync(innerRoot);
          expect(innerDirs.length).toBe(1);
          expect(readFileSync(join(innerRoot, innerDirs[0]!, 'qmp-transcript.log'), 'utf8')).toMatch(/query-status/);
        }
      });
    }
  }
});

describe('faults give a clear failed verdict with artifacts, never a hang', () => {
  async function runFile(steps: unknown[], opts: { killQemuOn?: RegExp; resultsDir?: string } = {}) {
    const dir = scratchDir('scn');
    writeFileSync(join(dir, 'fault.json'), JSON.stringify({ description: 'fault injection', steps }));
    const { def } = (await resolveScenario(join(dir, 'fault.json')))!;
    const root = testRuntimeRoot();
    let lab: number | undefined;
    const progress: Progress = {
      step: (_l, fn) => fn(() => {}),
      info: (line) => {
        if (opts.killQemuOn?.test(line)) {
          lab = liveLabQemuPids(root)[0];
          if (lab) process.kill(lab, 'SIGKILL');
        }
      },
    };
    const t0 = Date.now();
    const report = await runScenario(def, {
      resultsDir: opts.resultsDir ?? scratchDir('res'),
      runtimeRoot: root,
      progress,
      writeResults: writeReportFiles,
    });
    return { report, ms: Date.now() - t0, root };
  }

  /**
   * A fault a shell in the guest makes before its step's timeout, which the agent enforces too: on a loaded machine the
   * shell may not have run by then (seen under the one-core quota: the agent killed it at 4.3 s, the fault never
   * happened) or run only after the timeout, once the agent had answered the next request (the stop then hit a later
   * read instead of the ping). Either is told by the agent's own replies after the fault's request (the shell killed
   * at its timeout, or a pong) and run again with twice the timeout, at most three times.
   */
  async function faultInTime(argv: string[], timeoutSec: number, happened: (r: ScenarioReport) => boolean) {
    for (let attempt = 1; ; attempt++, timeoutSec *= 2) {
      const run = await runFile([{ step: 'guest-exec', argv, timeoutSec }]);
      const transcript = readFileSync(join(run.report.resultsDir, 'artifacts', 'agent-transcript.log'), 'utf8');
      const afterFault = transcript.slice(transcript.indexOf('"execute":"exec"'));
      const agentOutlivedIt = /"timedOut":true|"pong":true/.test(afterFault);
      if (happened(run.report) || !agentOutlivedIt || attempt === 3) return { ...run, timeoutSec };
    }
  }

  const bound = [
    { step: 'bind', device: 'edu1', as: 'edu' },
    { step: 'start-worker', as: 'w' },
    { step: 'open', worker: 'w', binding: 'edu' },
  ];

  it('QEMU killed mid-scenario', async () => {
    const { report, root } = await runFile(
      [
        ...bound,
        { step: 'mark', as: 'm' },
        { step: 'alloc', worker: 'w', sizeMiB: 8, as: 'r' },
        { step: 'register', worker: 'w', region: 'r' },
        { step: 'sleep', ms: 2000 },
        { step: 'expect-guest-pins', since: 'm', mib: 8 },
      ],
      { killQemuOn: /PASS step 6: register r/ },
    );
    expect(report.passed).toBe(false);
    expect(report.error).toMatch(/closed|exited|killed/i);
    expect(existsSync(join(report.resultsDir, 'artifacts', 'console.log'))).toBe(true);
    expect(existsSync(join(report.resultsDir, 'results.json'))).toBe(true);
    expect(liveLabQemuPids(root)).toEqual([]);
  });

  it('guest kernel panic: detected at once, not after the step timeout', async () => {
    const { report, ms, root } = await runFile([
      ...bound,
      { step: 'guest-exec', argv: ['sh', '-c', 'echo c > /proc/sysrq-trigger'], timeoutSec: 120 },
      { step: 'mark', as: 'm' },
    ]);
    expect(report.passed).toBe(false);
    expect(report.error).toMatch(/panicked/);
    expect(report.checks.find((c) => c.name.startsWith('guest kernel logged no '))?.measured).toMatch(/Kernel panic|Oops|BUG/);
    expect(ms).toBeLessThan(60_000);
    expect(liveLabQemuPids(root)).toEqual([]);
  });

  it('agent hung: the step times out with a clear verdict and the lab still powers off', { timeout: 400_000 }, async () => {
    // The step can only time out (the agent stopped itself), so its timeout is short: ample for a shell to start and
    // send SIGSTOP, which the ping below needs to have happened, unless the machine is loaded (faultInTime).
    const judged = (r: ScenarioReport) =>
      /the agent did not answer a ping/.test(
        String(r.checks.find((c) => c.name === 'guest: balance judged before shutdown')?.measured ?? ''),
      );
    const { report, root, timeoutSec } = await faultInTime(['sh', '-c', 'kill -STOP $(pidof tcelab-agent)'], 2, judged);
    expect(report.passed).toBe(false);
    expect(report.error).toMatch(new RegExp(`step 1 \\(guest-exec\\): did not finish within ${timeoutSec} s`));
    // The last look at the guest is given up after one ping, not after each read's own timeout.
    expect(report.checks.find((c) => c.name === 'guest: balance judged before shutdown')?.measured).toMatch(
      /the agent did not answer a ping within 10 s/,
    );
    expect(report.shutdown?.effective).toBe('powerdown');
    expect(liveLabQemuPids(root)).toEqual([]);
  });

  it('agent killed: the lost reply is a timeout; init restarts the agent', { timeout: 400_000 }, async () => {
    const restarted = (r: ScenarioReport) =>
      /agent exited with status 137; restarting/.test(readFileSync(join(r.resultsDir, 'artifacts', 'console.log'), 'utf8'));
    const { report, root, timeoutSec } = await faultInTime(['sh', '-c', 'kill -KILL $(pidof tcelab-agent)'], 4, restarted);
    expect(report.passed).toBe(false);
    expect(report.error).toMatch(new RegExp(`did not finish within ${timeoutSec} s`));
    expect(restarted(report)).toBe(true);
    expect(liveLabQemuPids(root)).toEqual([]);
  });

  it('disk full in the results dir: a failed verdict naming it, the lab torn down', async () => {
    if (process.getuid?.() !== 0) return; // mounting a tiny tmpfs needs root (CI and the lab machines are)
    const full = scratchDir('full');
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', full]);
    try {
      writeFileSync(join(full, 'filler'), Buffer.alloc(60 * 1024));
      mkdirSync(join(full, 'res'));
      const { report, root } = await runFile([{ step: 'sleep', ms: 10 }], { resultsDir: join(full, 'res') });
      expect(report.passed).toBe(false);
      expect(report.error).toMatch(/could not write the results: .*ENOSPC/);
      expect(liveLabQemuPids(root)).toEqual([]);
    } finally {
      execFileSync('umount', [full]);
    }
  });
});

describe('sockets and listeners', () => {
  function tcpListeners(pids: number[]): string[] {
    const inodes = new Set<string>();
    for (const pid of pids) {
      for (const fd of readdirSync(`/proc/${pid}/fd`)) {
        try {
          const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
          if (m) inodes.add(m[1]!);
        } catch {}
      }
    }
    const out: string[] = [];
    for (const f of ['/proc/net/tcp', '/proc/net/tcp6']) {
      for (const line of readFileSync(f, 'utf8').split('\n').slice(1)) {
        const cols = line.trim().split(/\s+/);
        if (cols[3] === '0A' && inodes.has(cols[9]!)) out.push(cols[1]!);
      }
    }
    return out;
  }

  it('runtime dirs are 0700, and the only TCP listener is the live view on 127.0.0.1', async () => {
    const root = testRuntimeRoot();
    const { profile, image } = await emulatedLabInputs();
    const lab = await Lab.launch(profile, { image, runtimeRoot: root, extraArgs: ['-S'] });
    const live = new LiveServer();
    try {
      expect(statSync(lab.paths.dir).mode & 0o777).toBe(0o700);
      expect(statSync(root).mode & 0o777).toBe(0o700);
      expect(statSync(lab.paths.qmpSocket).isSocket()).toBe(true);
      expect(tcpListeners([process.pid, lab.process.pid])).toEqual([]);
      const url = await live.start(0);
      const port = Number(new URL(url).port);
      // 0100007F = 127.0.0.1 in /proc/net/tcp's little-endian hex.
      expect(tcpListeners([process.pid, lab.process.pid])).toEqual([`0100007F:${port.toString(16).toUpperCase().padStart(4, '0')}`]);
    } finally {
      await live.close();
      await lab.close();
    }
  });
});
