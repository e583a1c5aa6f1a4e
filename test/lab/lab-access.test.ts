import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { liveLabQemuPids } from '../helpers/processes.js';
import { runtimeDirsIn } from '../helpers/lab.js';
import { upLab } from '../helpers/up.js';

/** Stepping into a running lab as a person would: a program through the agent, and the guest's console. */
describe('tcelab exec and tcelab console on a tcelab up lab', () => {
  it('runs programs (output, exit code), shows the console, and types on it', async () => {
    const lab = await upLab('emulated');
    try {
      // QEMU is named as QEMU in the process table (the kernel keeps 15 characters: qemu-system-ppc), staged or not.
      const status = JSON.parse(lab.cli(['hotplug', 'status']).stdout) as { qemuPid: number };
      expect(readFileSync(`/proc/${status.qemuPid}/comm`, 'utf8').trim()).toBe('qemu-system-ppc');
      expect(spawnSync('pgrep', ['-x', 'qemu-system-ppc'], { encoding: 'utf8' }).stdout.split('\n')).toContain(String(status.qemuPid));
      const uname = lab.cli(['exec', '--', 'uname', '-r']);
      expect(uname.status, uname.stderr).toBe(0);
      expect(uname.stdout.trim()).toBe(lab.info.guestKernel);
      // The program's own flags stay its own; its stdout, stderr and exit code come back as they were.
      const mixed = lab.cli(['exec', '--', 'sh', '-c', 'echo out; echo err >&2; exit 3']);
      expect([mixed.status, mixed.stdout, mixed.stderr]).toEqual([3, 'out\n', 'err\n']);
      const none = lab.cli(['exec']);
      expect(none.status).toBe(2);
      expect(none.stderr).toMatch(/tcelab exec: CMD: name the program to run after --/);
      const timedOut = lab.cli(['exec', '--timeout', '1', '--', 'sleep', '5']);
      expect(timedOut.status).toBe(124);
      expect(timedOut.stderr).toMatch(/sleep did not finish within 1 s/);

      // What the console holds so far: the guest's boot to its init.
      const shown = lab.cli(['console', '--no-follow']);
      expect(shown.status, shown.stderr).toBe(0);
      expect(shown.stdout).toMatch(/TCELAB-INIT-READY|restored from snapshot/);
      // Typed on the console (piped, as a terminal would): the guest's console shell answers.
      const typed = lab.cli(['console'], 'echo MARK_$((6*7))\n', 30_000);
      expect(typed.status, typed.stderr).toBe(0);
      expect(typed.stdout).toMatch(/^MARK_42\r?$/m);
      // Read-only types nothing.
      const ro = lab.cli(['console', '--read-only', '--no-follow'], 'echo NEVER_$((6*7))\n');
      expect(ro.stdout).not.toMatch(/NEVER_42/);
      const inner = lab.cli(['exec', '--inner', '--', 'true']);
      expect(inner.status).not.toBe(0);
      expect(inner.stderr).toMatch(/has no inner lab/);
    } finally {
      expect(await lab.shutdown()).toBe(0);
    }
    expect(liveLabQemuPids(lab.root)).toEqual([]);
    expect(runtimeDirsIn(lab.root)).toEqual([]);
  });
});
