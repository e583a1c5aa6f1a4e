import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { runScenario } from '../../src/scenario/runner.js';
import type { ScenarioReport } from '../../src/scenario/scenario.js';
import { loadScenarioFile } from '../../src/scenario/data/scenario-file.js';
import { definitionFromFile } from '../../src/scenario/data/interpreter.js';
import { procedures } from '../../src/scenario/registry.js';
import type { ScenarioDefinition } from '../../src/scenario/scenario.js';
import { Lab } from '../../src/lab/lab.js';
import { loadProfile } from '../../src/qemu/profile.js';
import { stageDebianQemu } from '../../src/qemu/stage-qemu.js';
import { requireGuestImage } from '../../src/image/image-builder.js';
import { testRuntimeRoot, runtimeDirsIn } from '../helpers/lab.js';
import { liveLabQemuPids } from '../helpers/processes.js';
import { cacheDir, packageRoot, profilesDir } from '../../src/util/paths.js';
import { scratchDir } from '../helpers/scratch.js';

function check(report: ScenarioReport, prefix: string) {
  const c = report.checks.find((x) => x.name.startsWith(prefix));
  if (!c) throw new Error(`no check ${prefix}… in ${report.checks.map((x) => x.name).join(' | ')}`);
  return c;
}
const failed = (report: ScenarioReport) => report.checks.filter((c) => c.status === 'fail').map((c) => c.name);

/** Real processes that lock (mlock) and pin (io_uring fixed buffers) memory on this machine. */
let lockHolder: string;
const started: ChildProcess[] = [];
const helperPids = () =>
  execFileSync('sh', ['-c', 'pgrep -f "lock-holder (mlock|pin|both|churn|pin-huge)" || true'], { encoding: 'utf8' })
    .split('\n')
    .filter(Boolean)
    .map(Number);

/**
 * A file kept in the cache under the hash of its content (written whole, then renamed): the same from run to run.
 * The QEMU wrapper below is a lab's QEMU binary, whose path and hash are in the snapshot key: kept so, its labs restore
 * from the machine the first one saved, instead of each booting cold and saving a machine nobody restores.
 */
function keptFile(name: string, content: Buffer | string, make: (path: string) => void): string {
  const dir = join(cacheDir(), 'test-bin', createHash('sha256').update(content).digest('hex').slice(0, 16));
  const path = join(dir, name);
  if (!existsSync(path)) {
    mkdirSync(dir, { recursive: true });
    make(`${path}.${process.pid}`);
    renameSync(`${path}.${process.pid}`, path);
  }
  return path;
}

beforeAll(() => {
  const source = join(packageRoot, 'test/fixtures/lock-holder.c');
  lockHolder = keptFile('lock-holder', readFileSync(source), (out) =>
    execFileSync('cc', ['-O2', '-Wall', '-Wextra', '-Werror', '-o', out, source]),
  );
});

const hostPinnedPages = () => {
  const v = readFileSync('/proc/vmstat', 'utf8');
  const n = (k: string) => Number(new RegExp(`^${k} (\\d+)$`, 'm').exec(v)?.[1] ?? 0);
  return n('nr_foll_pin_acquired') - n('nr_foll_pin_released');
};

// A killed holder's io_uring buffers are unpinned by the kernel's deferred teardown: wait for it, so the next test starts level.
afterEach(async () => {
  for (const c of started.splice(0)) c.kill('SIGKILL');
  for (const pid of helperPids()) process.kill(pid, 'SIGKILL');
  for (let i = 0, last = -1; i < 50; i++) {
    const now = hostPinnedPages();
    if (now === last) break;
    last = now;
    await new Promise((r) => setTimeout(r, 200));
  }
});

/** Starts a neighbour and resolves once its memory is held. */
async function neighbour(mode: 'mlock' | 'pin' | 'both' | 'churn' | 'pin-huge', mib: number): Promise<ChildProcess> {
  const child = spawn(lockHolder, [mode, String(mib), '120'], { stdio: ['ignore', 'pipe', 'inherit'] });
  started.push(child);
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => d.toString().includes('held') && resolve());
    child.once('exit', (code) => reject(new Error(`lock-holder exited ${code}`)));
  });
  return child;
}

/**
 * Runs `body` with the Mlocked verdict on the lab's own memory cgroup (where the machine has one) or, as on a machine
 * without, on the system-wide counter less what the neighbours account (TCELAB_NO_CGROUP=1).
 */
async function withMechanism<T>(mechanism: 'cgroup' | 'neighbours', body: () => Promise<T>): Promise<T> {
  const before = process.env.TCELAB_NO_CGROUP;
  if (mechanism === 'neighbours') process.env.TCELAB_NO_CGROUP = '1';
  try {
    return await body();
  } finally {
    if (before === undefined) delete process.env.TCELAB_NO_CGROUP;
    else process.env.TCELAB_NO_CGROUP = before;
  }
}

describe('verdicts attributed to the lab, not to its neighbours', () => {
  // On the mechanism every lab here uses (the lab's own cgroup for Mlocked; FOLL_PIN less the neighbours' VmPin).
  // The neighbours' accounting for Mlocked (machines without a writable memory cgroup) is not proven immune here:
  // run beside the suite's other labs it still false-failed once in two runs (session 6); its seeded leak is proven.
  it('a neighbour that locks and pins memory during the run, and another lab beside it (mem-lock=on), do not fail it', () =>
    withMechanism('cgroup', async () => {
      const root = testRuntimeRoot();
      const profile = await loadProfile('emulated');
      const image = await requireGuestImage('base');
      let other: Lab | undefined;
      // What the neighbours hold, read from their own /proc while the lab runs (the system-wide counters also move
      // with the suite's other labs, which come and go meanwhile).
      const held: Record<string, number> = {};
      const statusKb = (pid: number, field: string) =>
        Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);
      // The scenario's own step starts the neighbours after the host baseline: they are still holding when the host is judged.
      const def: ScenarioDefinition = {
        name: 'with-neighbours',
        description: 'neighbours lock and pin memory while the lab runs',
        defaultProfile: 'emulated',
        async run(ctx) {
          const holder = await neighbour('both', 8);
          other = await Lab.launch(
            { ...profile, qemu: { ...profile.qemu, memLock: true, memoryMiB: 256 } },
            { image, runtimeRoot: root, extraArgs: ['-S'] },
          );
          ctx.phase('neighbours holding');
          held.holderLck = statusKb(holder.pid!, 'VmLck');
          held.holderPin = statusKb(holder.pid!, 'VmPin');
          held.otherLck = statusKb(other.process.pid, 'VmLck');
        },
      };
      try {
        const report = await runScenario(def, { resultsDir: scratchDir('res'), runtimeRoot: root });
        expect(failed(report)).toEqual([]);
        expect(report.passed).toBe(true);
        // The neighbours really held memory during the run: 8 MiB locked and pinned (io_uring), and the other lab's
        // 256 MiB of locked RAM.
        expect(held.holderLck).toBe(8 * 1024);
        expect(held.holderPin).toBe(8 * 1024);
        expect(held.otherLck).toBeGreaterThanOrEqual(256 * 1024);
        const pinned = report.releases.find((r) => r.counter === 'unattributedPinnedPages')!;
        expect(pinned.returned).toBe(true);
        // Their change was subtracted (its sign depends on what the suite's other labs did meanwhile: a 1 GiB
        // mem-lock=on lab that exits during the run outweighs these two).
        expect(check(report, 'host: Mlocked back to baseline').detail).toMatch(/unevictable memory of the lab's own memory cgroup/);
        expect(check(report, 'host: no process of the lab outlives QEMU').measured).toBe('none');
      } finally {
        await other?.close();
      }
      expect(liveLabQemuPids(root)).toEqual([]);
      expect(runtimeDirsIn(root)).toEqual([]);
    }));

  it('without a memory cgroup, a neighbour that never holds still during the wait: Mlocked is not judged (not a guess either way)', () =>
    withMechanism('neighbours', async () => {
      const root = testRuntimeRoot();
      const def: ScenarioDefinition = {
        name: 'with-a-restless-neighbour',
        description: 'a neighbour locks and unlocks 32 MiB every 150 ms from the start to past the host verdicts',
        defaultProfile: 'emulated',
        async run(ctx) {
          await neighbour('churn', 32);
          ctx.phase('neighbour churning');
        },
      };
      // On a busy machine the neighbour itself can be starved of CPU for 500 ms: then it did hold still, and the
      // verdict is judged — rightly, and it must pass (seen once in 15 suite runs). Up to three runs: each is
      // either not judged or judged while all held still and passing, and at least one is not judged.
      const outcomes: string[] = [];
      for (let attempt = 0; attempt < 3 && !outcomes.includes('not judged'); attempt++) {
        const report = await runScenario(def, { resultsDir: scratchDir('res'), runtimeRoot: root, releaseTimeoutMs: 2000 });
        const mlocked = check(report, 'host: Mlocked back to baseline');
        if (mlocked.status === 'not-applicable') {
          expect(mlocked.notApplicable).toMatch(/^not judged: .*the neighbours' own locked memory kept moving \(by up to \d+ kB/);
          expect(report.releases.find((r) => r.counter === 'unattributedMlockedKb')!.notJudged).toBe(mlocked.notApplicable);
          outcomes.push('not judged');
        } else {
          expect({ status: mlocked.status, detail: mlocked.detail }).toEqual({
            status: 'pass',
            detail: expect.stringMatching(/back once they held still for 500 ms/),
          });
          outcomes.push('judged while still');
        }
        // Nothing else is disturbed: the other verdicts are judged and pass.
        expect(failed(report)).toEqual([]);
      }
      expect(outcomes).toContain('not judged');
      expect(liveLabQemuPids(root)).toEqual([]);
    }));

  it('a neighbour whose VmPin is not its pinned pages (io_uring on huge pages) leaves during the run: FOLL_PIN is not judged, not failed', async () => {
    const root = testRuntimeRoot();
    // In the baseline: 16 MiB of VmPin held as 8 pins (one per 2 MiB folio); gone before QEMU exits.
    const holder = await neighbour('pin-huge', 16);
    const def: ScenarioDefinition = {
      name: 'with-a-huge-page-pinner-leaving',
      description: 'a neighbour that pinned 16 MiB of huge pages with io_uring exits during the run',
      defaultProfile: 'emulated',
      async run(ctx) {
        holder.kill('SIGKILL');
        await new Promise((r) => holder.once('exit', r));
        ctx.phase('neighbour gone');
      },
    };
    const report = await runScenario(def, { resultsDir: scratchDir('res'), runtimeRoot: root, releaseTimeoutMs: 2000 });
    const pinned = check(report, 'host: pinned pages (FOLL_PIN) back to baseline');
    expect(pinned.status).toBe('not-applicable');
    expect(pinned.notApplicable).toMatch(
      /^not judged: \d+ pages above the baseline, no more than the VmPin that neighbours of the baseline have given up since/,
    );
    expect(failed(report)).toEqual([]);
    expect(liveLabQemuPids(root)).toEqual([]);
  });

  it.each(['cgroup', 'neighbours'] as const)(
    "seeded host-side leak: a helper started by the lab's QEMU wrapper keeps memory locked and pinned after QEMU " +
      'exits — the run fails and names it (Mlocked judged by %s)',
    (mechanism) =>
      withMechanism(mechanism, async () => {
        const root = testRuntimeRoot();
        const dir = scratchDir('wrapper');
        // A wrapper as labs write them (set-up, then exec QEMU); its helper lives on. Bounded: it exits after 120 s.
        // 64 MiB: above what the Mlocked verdict tolerates when neighbours change a lot meanwhile (1 % of their change:
        // 10 MiB when another 1 GiB mem-lock=on lab of the suite exits during the run, as seen with an 8 MiB helper).
        // It execs the profile's own QEMU (Debian trixie's, staged), which restores a saved machine faithfully.
        const qemu = (await stageDebianQemu('debian:trixie')).binary;
        const script = `#!/bin/sh\n${lockHolder} both 64 120 >/dev/null 2>&1 &\nsleep 0.3\nexec ${qemu} "$@"\n`;
        const wrapper = keptFile('qemu-with-helper', script, (out) => writeFileSync(out, script, { mode: 0o755 }));
        const base = JSON.parse(readFileSync(join(profilesDir, 'emulated.json'), 'utf8'));
        const profilePath = join(dir, 'wrapped.json');
        writeFileSync(profilePath, JSON.stringify({ ...base, qemu: { ...base.qemu, binary: wrapper } }));
        const file = await loadScenarioFile(join(packageRoot, 'scenarios', 'window-map-release.json'));
        const report = await runScenario(definitionFromFile(file, procedures), {
          resultsDir: scratchDir('res'),
          runtimeRoot: root,
          profile: profilePath,
          releaseTimeoutMs: 3000,
        });
        const mlockedCheck = check(report, 'host: Mlocked back to baseline');
        // The neighbours' accounting judges only while the neighbours hold still; when the suite's other labs keep
        // them moving for the whole wait it says "not judged" (never a pass): either way the leak does not pass.
        const judged = mechanism === 'cgroup' || mlockedCheck.status === 'fail';
        if (!judged)
          expect(mlockedCheck.notApplicable).toMatch(
            /^not judged: .*(the neighbours' own locked memory kept moving|could not be read while the neighbours held still)/,
          );
        expect(failed(report).sort()).toEqual([
          ...(judged ? ['host: Mlocked back to baseline after QEMU exit'] : []),
          'host: no process of the lab outlives QEMU',
          'host: pinned pages (FOLL_PIN) back to baseline after QEMU exit',
        ]);
        // The helper's 16384 pages, give or take what other processes' transient I/O pins and the neighbours'
        // io_uring pins (a few pages off their VmPin) move the system-wide counter by: within 1 MiB.
        const pinned = report.releases.find((r) => r.counter === 'unattributedPinnedPages')!;
        expect(pinned.final - pinned.baseline).toBeGreaterThanOrEqual(16384 - 256);
        expect(pinned.final - pinned.baseline).toBeLessThanOrEqual(16384 + 256);
        // On the lab's own memory cgroup (this machine has one) the helper's 64 MiB are charged there, exactly; the
        // neighbours' accounting is good to a few MiB while the suite's labs come and go (seen: 1.2 MiB short).
        const mlocked = report.releases.find((r) => r.counter === (mechanism === 'cgroup' ? 'labLockedKb' : 'unattributedMlockedKb'))!;
        if (judged) expect(mlocked.final - mlocked.baseline).toBeGreaterThanOrEqual(65536 - (mechanism === 'cgroup' ? 1024 : 4096));
        expect(check(report, 'host: no process of the lab outlives QEMU').measured).toMatch(
          /^pid \d+ \(lock-holder, parent \d+\): locked 65536 kB, VmPin 65536 kB$/,
        );
        expect(report.passed).toBe(false);
        expect(liveLabQemuPids(root)).toEqual([]);
      }),
  );
});

describe('verdicts on the guest: balance at shutdown, holders named, kernel reports', () => {
  it(
    'a user program that registers memory, passes its VFIO fds over a unix socket and exits; a WARNING in the ' +
      'kernel log — the run fails, naming the holder and the report',
    async () => {
      const root = testRuntimeRoot();
      const dir = scratchDir('scn');
      const path = join(dir, 'handed-off.json');
      const group = '$(basename $(readlink /sys/bus/pci/devices/0001:00:00.0/iommu_group))';
      writeFileSync(
        path,
        JSON.stringify(
          {
            description: 'seeded faults: fds handed off to a long-lived process; a WARNING in the kernel log',
            steps: [
              { step: 'bind', device: 'edu1', as: 'dev' },
              { step: 'mark', as: 'before' },
              { step: 'guest-exec', argv: ['sh', '-c', `tcelab-agent hand-off ${group} 16 600`] },
              { step: 'expect-release', since: 'before', withinSec: 2 },
              // A process that locks 4 MiB and lives on: locked memory (VmLck) held at shutdown.
              { step: 'guest-exec', argv: ['sh', '-c', 'tcelab-agent lock 4 600 </dev/null >/dev/null 2>&1 &'] },
              {
                step: 'guest-exec',
                argv: ['sh', '-c', 'echo "<4>WARNING: CPU: 0 PID: 1 at tcelab/seeded.c:1 seeded_fault+0x0/0x10" > /dev/kmsg'],
              },
            ],
          },
          null,
          2,
        ),
      );
      const report = await runScenario(definitionFromFile(await loadScenarioFile(path), procedures), {
        resultsDir: scratchDir('res'),
        runtimeRoot: root,
      });
      expect(failed(report).sort()).toEqual([
        'guest kernel logged no panic, Oops, soft lockup, hard lockup, BUG, WARNING, RCU stall, hung task',
        'guest: locked memory of its processes (Σ VmLck) back to the agent-up baseline before shutdown',
        'guest: pinned pages back to the agent-up baseline before shutdown',
        'step 4: expect-release back to before within 2 s',
      ]);
      const holder = new RegExp(
        'pid \\d+ \\(fd-receiver "tcelab-agent hand-off \\d+ 16 600", parent 1\\): ' +
          'fd \\d+ → /dev/vfio/vfio \\(container\\), fd \\d+ → /dev/vfio/\\d+ \\(group\\)',
      );
      expect(check(report, 'step 4: expect-release').detail).toMatch(holder);
      expect(check(report, 'guest: pinned pages back').measured).toBe('4096');
      expect(check(report, 'guest: pinned pages back').detail).toMatch(holder);
      expect(check(report, 'guest: locked memory').measured).toBe('4096 kB');
      expect(check(report, 'guest: locked memory').detail).toMatch(
        /pid \d+ \(mem-locker "tcelab-agent lock 4 600", parent 1\): VmLck 4096 kB/,
      );
      expect(check(report, 'guest kernel logged no').measured).toMatch(
        /^WARNING: WARNING: CPU: 0 PID: 1 at tcelab\/seeded\.c:1 seeded_fault/,
      );
      expect(liveLabQemuPids(root)).toEqual([]);
    },
  );
});
