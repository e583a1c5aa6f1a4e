import { beforeAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { runScenario } from '../../src/scenario/runner.js';
import { findProcedure } from '../../src/scenario/registry.js';
import type { ScenarioReport } from '../../src/scenario/scenario.js';
import { stageDebianQemu } from '../../src/qemu/stage-qemu.js';
import { emulatedLabInputs, testRuntimeRoot, runtimeDirsIn } from '../helpers/lab.js';
import { Lab } from '../../src/lab/lab.js';
import type { SnapshotFaults } from '../../src/lab/lab-snapshot.js';
import type { AgentClient } from '../../src/agent/agent-client.js';
import { removeSnapshot } from '../../src/snapshot/snapshot.js';
import { liveLabQemuPids } from '../helpers/processes.js';
import { scratchDir } from '../helpers/scratch.js';

/**
 * Labs restored from a saved, booted machine, with a QEMU that restores a TCG guest faithfully (8.2 on; the
 * host's is 7.2): Debian trixie's, staged from its packages as `--qemu debian:trixie` does. Every built-in
 * scenario restored is run by scripts/ci-slow-checks.sh (`tcelab run --all --qemu debian:trixie`).
 */
describe('labs from a saved, booted machine', () => {
  let qemu: string;
  beforeAll(async () => {
    qemu = (await stageDebianQemu('debian:trixie')).binary;
  }, 300_000);

  const run = (name: string, root: string, extra: { snapshots?: 'off' } = {}) =>
    runScenario(findProcedure(name)!, { resultsDir: scratchDir('res'), runtimeRoot: root, qemu, ...extra });
  const failed = (r: ScenarioReport) => r.checks.filter((c) => c.status === 'fail').map((c) => `${c.name}: ${c.measured}`);

  it('two labs restored from one snapshot at the same time both pass and say so; --cold boots cold', async () => {
    const root = testRuntimeRoot();
    // The machine's first lab boots cold and saves it (or, with a warm cache, is restored itself).
    const first = await run('ddw-windows', root);
    expect(failed(first)).toEqual([]);
    expect(first.qemuVersion).toMatch(/^10\./);
    const key = first.labStart?.saved ?? first.labStart?.snapshot;
    expect(key, JSON.stringify(first.labStart)).toMatch(/^[0-9a-f]{24}$/);

    const [a, b] = await Promise.all([run('prereg-accounting', root), run('guest-release', root)]);
    for (const r of [a, b]) {
      expect(r.error).toBeUndefined();
      expect(failed(r)).toEqual([]);
      expect(r.labStart).toMatchObject({ how: 'restored', snapshot: key });
      // How fast is the bench's to say (restored vs cold vs floor, side by side), not a timed test's.
      // The kernel-log verdict reads the boot log saved with the snapshot, then what this lab's guest printed.
      const console = readFileSync(join(r.resultsDir, 'artifacts', 'console.log'), 'utf8');
      expect(console).toMatch(new RegExp(`TCELAB-INIT-READY kernel=6\\.12[\\s\\S]*\\[tcelab: restored from snapshot ${key}`));
    }
    // Defect 1 reproduces on a restored guest exactly as on a cold one.
    expect(a.checks.filter((c) => c.status === 'known-defect').length).toBeGreaterThanOrEqual(3);

    const cold = await run('ddw-windows', root, { snapshots: 'off' });
    expect(failed(cold)).toEqual([]);
    expect(cold.labStart).toMatchObject({ how: 'cold', why: 'a cold boot was asked for (--cold)' });
    expect(liveLabQemuPids(root)).toEqual([]);
    expect(runtimeDirsIn(root)).toEqual([]);
  });

  /** How many virtqueue interrupts of the agent's virtio-serial port the guest has taken (/proc/interrupts). */
  async function virtqueueInterrupts(agent: AgentClient): Promise<number> {
    const { content } = await agent.readFile('/proc/interrupts');
    const row = content.split('\n').find((l) => /virtio\d+-virtqueues/.test(l));
    expect(row, content).toBeDefined();
    return Number(row!.trim().split(/\s+/)[1]);
  }

  it('a machine saved with an interrupt in flight (it may restore deaf to interrupts) is refused: the lab boots cold, saves one that hears them', async () => {
    const root = testRuntimeRoot();
    const { profile: base, image } = await emulatedLabInputs();
    // A machine of its own (another RAM size, so another snapshot key): the seeded snapshot is no other lab's.
    const profile = { ...base, qemu: { ...base.qemu, memoryMiB: 768 } };
    const seeded = 'seeded by the test';
    const said: string[] = [];
    const progress = {
      step: <T>(_label: string, fn: (update: () => void) => Promise<T>) => fn(() => {}),
      info: (l: string) => said.push(l),
    };
    const withLab = async <T>(faults: SnapshotFaults, use: (lab: Lab, agent: AgentClient) => Promise<T>): Promise<T> => {
      const lab = await Lab.launch(profile, { image, runtimeRoot: root, snapshotFaults: faults, progress });
      try {
        await lab.waitForGuestInit();
        return await use(lab, await lab.agent(progress));
      } finally {
        await lab.close();
      }
    };
    // Interrupts the guest took while the agent answered three requests (each one is heard by an interrupt).
    const heard = async (agent: AgentClient) => {
      const before = await virtqueueInterrupts(agent);
      for (let i = 0; i < 3; i++) await agent.info();
      return (await virtqueueInterrupts(agent)) - before;
    };

    // A snapshot of this machine from an earlier run is dropped: the first lab must boot cold and save.
    let key = await withLab({}, async (lab) => lab.start.snapshot ?? lab.start.saved);
    if (key) await removeSnapshot(key);
    key = await withLab({ saveWithInterruptSignalled: seeded }, async (lab) => lab.start.saved);
    expect(key).toMatch(/^[0-9a-f]{24}$/);
    try {
      // Refused: the lab boots cold and saves the machine at an instant with nothing signalled; it hears every request.
      const refused = await withLab({}, async (lab, agent) => ({ start: lab.start, heard: await heard(agent) }));
      expect(refused.start).toMatchObject({ how: 'cold', why: 'its snapshot did not load', saved: key });
      expect(said.join('\n')).toMatch(
        new RegExp(
          `snapshot ${key} did not load \\(it was saved with an interrupt signalled to a CPU and not yet taken` +
            '.*CPU 0 OS \\(.*\\); removed it, booting cold',
        ),
      );
      expect(refused.heard).toBeGreaterThanOrEqual(3);
      const restored = await withLab({}, async (lab, agent) => ({ start: lab.start, heard: await heard(agent) }));
      expect(restored.start).toMatchObject({ how: 'restored', snapshot: key });
      expect(restored.heard).toBeGreaterThanOrEqual(3);
    } finally {
      await removeSnapshot(key!);
    }
    expect(liveLabQemuPids(root)).toEqual([]);
    expect(runtimeDirsIn(root)).toEqual([]);
  }, 300_000);
});
