import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, readFileSync } from 'node:fs';
import { Lab } from '../../src/lab/lab.js';
import { QmpCommandError, QmpConnectionClosedError, QmpTimeoutError } from '../../src/protocol/errors.js';
import { emulatedLabInputs, testRuntimeRoot, runtimeDirsIn } from '../helpers/lab.js';
import { liveLabQemuPids } from '../helpers/processes.js';
import { describeThreadStates, threadStates } from '../../src/probes/thread-states.js';
import { rng, mutate } from '../helpers/fuzz.js';

// A real qemu-system-ppc64 held at -S: the CPU never runs, QMP is fully live.
describe('QMP against a real QEMU (-S)', () => {
  const root = testRuntimeRoot();
  let lab: Lab;

  beforeAll(async () => {
    const { profile, image } = await emulatedLabInputs();
    lab = await Lab.launch(profile, { image, extraArgs: ['-S'], runtimeRoot: root });
  });

  afterAll(async () => {
    await lab?.dispose();
    expect(liveLabQemuPids(root)).toEqual([]);
    expect(runtimeDirsIn(root)).toEqual([]);
  });

  it('negotiates capabilities and reports the QEMU version from the greeting', async () => {
    expect(lab.qmp.qemuVersion).toMatch(/^\d+\.\d+\.\d+$/);
    expect(await lab.qmp.queryStatus()).toMatchObject({ running: false, status: 'prelaunch' });
  });

  it('runs typed commands: QOM of the DDW-enabled PHB', async () => {
    expect(await lab.qmp.qomGet('/machine/peripheral/phb1', 'ddw')).toBe(true);
    expect(await lab.qmp.qomGet('/machine/peripheral/phb1', 'index')).toBe(1);
    const props = await lab.qmp.qomList('/machine/peripheral/edu1');
    expect(props.map((p) => p.name)).toContain('type');
  });

  it('turns QMP errors into typed errors with class and desc', async () => {
    const err = await lab.qmp.execute('no-such-command').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(QmpCommandError);
    expect((err as QmpCommandError).errorClass).toBe('CommandNotFound');
    const err2 = await lab.qmp.qomGet('/machine/peripheral/nothing', 'x').catch((e: unknown) => e);
    expect((err2 as QmpCommandError).errorClass).toBe('DeviceNotFound');
  });

  it('delivers events by subscription and waitFor, including ones after a mark', async () => {
    const seen: string[] = [];
    const off = lab.qmp.onEvent((e) => seen.push(e.event));
    const mark = lab.qmp.eventMark();
    await lab.qmp.cont();
    const resume = await lab.qmp.waitForEvent('RESUME', { timeoutMs: 5000, since: mark });
    expect(resume.event).toBe('RESUME');
    const stopMark = lab.qmp.eventMark();
    await lab.qmp.stop();
    await lab.qmp.waitForEvent('STOP', { timeoutMs: 5000, since: stopMark });
    off();
    expect(seen).toEqual(expect.arrayContaining(['RESUME', 'STOP']));
    await expect(lab.qmp.waitForEvent('DEVICE_DELETED', { timeoutMs: 200 })).rejects.toThrow(/did not arrive within 200 ms/);
  });

  it('survives malformed input to QEMU and keeps serving', async () => {
    lab.qmp.connection.sendRaw('{"execute": ');
    lab.qmp.connection.sendRaw('}');
    await new Promise((r) => setTimeout(r, 200));
    expect(await lab.qmp.queryStatus()).toHaveProperty('status');
  });

  it('QEMU survives 300 fuzzed QMP lines (seed 7) and our client stays in step', async () => {
    const r = rng(7);
    const bases = [
      '{"execute":"query-status","id":"f1"}',
      '{"execute":"qom-get","arguments":{"path":"/machine/peripheral/phb1","property":"ddw"},"id":"f2"}',
    ];
    for (let i = 0; i < 300; i++) lab.qmp.connection.sendRaw(Buffer.concat([mutate(bases[i % 2]!, r), Buffer.from('\n')]));
    await new Promise((res) => setTimeout(res, 500));
    expect(lab.process.running).toBe(true);
    expect(await lab.qmp.queryStatus()).toHaveProperty('status');
    expect(await lab.qmp.qomGet('/machine/peripheral/phb1', 'ddw')).toBe(true);
  });

  it('times out a command when QEMU does not answer, then recovers', async () => {
    // SIGSTOP freezes QEMU: a real unanswered command, not a fake.
    process.kill(lab.process.pid, 'SIGSTOP');
    try {
      const err = await lab.qmp.execute('query-status', undefined, 300).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(QmpTimeoutError);
      expect((err as Error).message).toMatch(/query-status.*no reply within 300 ms/);
    } finally {
      process.kill(lab.process.pid, 'SIGCONT');
    }
    // The late reply is dropped; the next command gets its own answer.
    expect(await lab.qmp.queryStatus()).toHaveProperty('status');
    // The transcript is written in the background: read it once what was recorded is in the file.
    await lab.qmp.connection.transcript.flushed();
    expect(readFileSync(lab.paths.qmpTranscript, 'utf8')).toMatch(/timeout after 300 ms waiting for query-status/);
  });

  it('keeps a transcript of the session in the runtime dir', async () => {
    await lab.qmp.connection.transcript.flushed();
    const t = readFileSync(lab.paths.qmpTranscript, 'utf8');
    expect(t).toMatch(/ < \{"QMP":/);
    expect(t).toMatch(/ > \{"execute":"qmp_capabilities"/);
    expect(existsSync(lab.paths.pidFile)).toBe(true);
  });

  it('fails pending commands when the connection closes', async () => {
    const quit = lab.qmp.quit().catch(() => {});
    const after = await lab.qmp.queryStatus().catch((e: unknown) => e);
    await quit;
    // Not exited in 10 s: say what QEMU was doing (seen once, under a heavily loaded machine, not understood yet).
    const exit = await lab.process.waitExit(10_000);
    if (!exit) expect(describeThreadStates(await threadStates(lab.host, lab.process.pid))).toBe('the process is gone');
    // Either QEMU answered before closing, or the command failed with a typed close error.
    if (after instanceof Error) expect(after).toBeInstanceOf(QmpConnectionClosedError);
    const late = await lab.qmp.queryStatus().catch((e: unknown) => e);
    expect(late).toBeInstanceOf(QmpConnectionClosedError);
    expect(lab.process.running).toBe(false);
  });
});
