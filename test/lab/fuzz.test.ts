import { describe, expect, it } from 'vitest';
import { existsSync, readFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { generateCalls, sequenceHash } from '../../src/fuzz/call-generator.js';
import { modelOptionsOf, type HcallFuzzSummary } from '../../src/fuzz/hcall-fuzz.js';
import { loadProfile } from '../../src/qemu/profile.js';
import type { ScenarioReport } from '../../src/scenario/scenario.js';
import { packageRoot } from '../../src/util/paths.js';
import { judgedNotPassing, testRuntimeRoot } from '../helpers/lab.js';
import { liveLabQemuPids } from '../helpers/processes.js';
import { scratchDir } from '../helpers/scratch.js';

/** `tcelab <args> --json` on the emulated lab: stdout's JSON and the exit status; no QEMU of it left behind. */
function tcelab<T>(args: string[]): { out: T; status: number | null; stderr: string } {
  const root = testRuntimeRoot();
  const cli = spawnSync(process.execPath, [join(packageRoot, 'dist/cli/main.js'), ...args, '--json'], {
    encoding: 'utf8',
    env: { ...process.env, TCELAB_RUNTIME_DIR: root },
    timeout: 120_000,
  });
  if (!cli.stdout.trim()) throw new Error(`tcelab ${args.join(' ')} printed nothing on stdout: ${cli.stderr.slice(-3000)}`);
  expect(liveLabQemuPids(root)).toEqual([]);
  return { out: JSON.parse(cli.stdout) as T, status: cli.status, stderr: cli.stderr };
}

/**
 * `tcelab fuzz hcall` on the emulated lab: 2000 seeded calls, each answer as the model of QEMU's handlers says; and
 * with the model's seeded fault (it believes QEMU refuses a misaligned ioba), a disagreement shrunk to at most 3
 * calls whose scenario file, run with `tcelab run`, fails on exactly that call.
 */
describe('tcelab fuzz hcall', () => {
  it('--seed 7 --count 2000: no disagreement, and the calls issued are the seed sequence', async () => {
    const results = scratchDir('fuzz');
    const { out, status, stderr } = tcelab<HcallFuzzSummary>(['fuzz', 'hcall', '--seed', '7', '--count', '2000', '--results', results]);
    expect({ disagreement: out.disagreement, status }, stderr.slice(-2000)).toEqual({ disagreement: undefined, status: 0 });
    expect(out).toMatchObject({
      seed: 7,
      count: 2000,
      stoppedBy: 'count',
      batches: 4,
      leftAlone: ['0x80000001: 0x800000000000000+0x40000000'],
    });
    const model = modelOptionsOf(await loadProfile('emulated'));
    expect(out.sequenceSha256).toBe(sequenceHash(generateCalls({ seed: 7, model, pePhbIndex: 1, otherPhbIndex: 0 }, 2000)));
    expect(Object.keys(out.byCall).sort()).toEqual([
      'H_GET_TCE',
      'H_PUT_TCE',
      'H_PUT_TCE_INDIRECT',
      'H_STUFF_TCE',
      'create',
      'query',
      'remove',
      'reset',
    ]);
    expect(out.nonZeroReads).toBeGreaterThan(100);
    expect(existsSync(join(results, 'fuzz-7-summary.json'))).toBe(true);
  });

  /** The fuzz with a fault of the model: its disagreement, shrunk; the scenario file's replay and its failing checks. */
  function faulted(fault: string): { d: NonNullable<HcallFuzzSummary['disagreement']>; label: string; failing: string[] } {
    const results = scratchDir('fuzz');
    const args = ['fuzz', 'hcall', '--seed', '7', '--count', '2000', '--seed-faults', fault, '--results', results];
    const { out, status, stderr } = tcelab<HcallFuzzSummary>(args);
    expect(status, stderr.slice(-2000)).toBe(1);
    const d = out.disagreement!;
    expect(d.scenarioFile).toBe(join(results, 'fuzz-7.json'));
    expect(d.shrunk.cutShort).toBe(false);
    const file = JSON.parse(readFileSync(d.scenarioFile, 'utf8')) as { steps: Array<{ label?: string }> };
    const label = `seed 7 call ${d.shrunk.disagreement.index}: ${d.shrunk.disagreement.call.split(' ')[0]}`;
    expect(file.steps.map((s) => s.label)).toContain(label);
    const run = tcelab<ScenarioReport>(['run', d.scenarioFile, '--results', join(results, 'replay')]);
    expect(run.status).toBe(1);
    return { d, label, failing: run.out.checks.filter(judgedNotPassing).map((c) => c.name) };
  }

  it('--seed-faults misaligned-ioba-refused: a disagreement, shrunk to ≤ 3 calls; its scenario file fails on exactly that call', () => {
    const { d, label, failing } = faulted('misaligned-ioba-refused');
    expect(d).toMatchObject({ expected: 'H_PARAMETER', measured: 'H_SUCCESS' });
    expect(d.shrunk.calls).toBeLessThanOrEqual(3);
    expect(failing).toEqual([expect.stringMatching(new RegExp(`^step \\d+: hcall ${label}$`))]);
  });

  it('--seed-faults partial-write-forgotten: seen only when a written entry is read back; shrunk to the write and the read', () => {
    const { d, label, failing } = faulted('partial-write-forgotten');
    expect(d.shrunk.disagreement.call).toMatch(/^H_GET_TCE /);
    expect(d.shrunk.disagreement.expected).toBe('H_SUCCESS tce=0x0');
    expect(d.shrunk.calls).toBe(2);
    expect(failing).toEqual([expect.stringMatching(new RegExp(`^step \\d+: hcall ${label}: the entry's value$`))]);
  });
});
