import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { toKcidb } from '../../src/report/kcidb.js';
import { mergeResults } from '../../src/report/merge.js';
import { kcidbValidator, sampleReport } from '../helpers/kcidb.js';
import { scratchDir } from '../helpers/scratch.js';

/** A shard's results dir as `run --all --shard i/n` leaves it: summary.json, and a dir per run with results.json. */
function shardDir(root: string, index: number, count: number, runs: Array<{ label: string; written: boolean }>): string {
  const dir = join(root, `shard-${index}`);
  mkdirSync(dir, { recursive: true });
  writeFileSync(
    join(dir, 'summary.json'),
    JSON.stringify({ passed: true, shard: { index, count }, planned: runs.map((r) => r.label), runs: runs.filter((r) => r.written) }),
  );
  for (const r of runs.filter((x) => x.written)) {
    mkdirSync(join(dir, r.label), { recursive: true });
    writeFileSync(
      join(dir, r.label, 'results.json'),
      JSON.stringify({ ...sampleReport(), scenario: r.label.replace(/@.*/, ''), passed: true }),
    );
  }
  return dir;
}

describe('merging the shards of a pipeline', () => {
  it('brings every shard back as one result, each run known by its label where it now lies', async () => {
    const root = scratchDir('merge');
    const a = shardDir(root, 1, 2, [{ label: 'ddw-windows@trixie', written: true }]);
    const b = shardDir(root, 2, 2, [{ label: 'prereg-accounting@trixie', written: true }]);
    const m = await mergeResults([a, b]);
    expect(m.missing).toEqual([]);
    expect(m.passed).toBe(true);
    expect(m.reports.map((r) => [r.scenario, r.resultsDir])).toEqual([
      ['ddw-windows@trixie', join(a, 'ddw-windows@trixie')],
      ['prereg-accounting@trixie', join(b, 'prereg-accounting@trixie')],
    ]);
    const kcidb = toKcidb(m.reports);
    expect(kcidbValidator()(kcidb)).toBe(true);
    expect(new Set(kcidb.tests.map((t) => String(t.path).split('.')[1]))).toEqual(new Set(['ddw-windows', 'prereg-accounting']));
  });

  it('names what is missing: a shard not among the inputs, a run a shard planned but did not report', async () => {
    const root = scratchDir('merge');
    const a = shardDir(root, 1, 3, [
      { label: 'ddw-windows@trixie', written: true },
      { label: 'guest-release@trixie', written: false },
    ]);
    const c = shardDir(root, 3, 3, [{ label: 'prereg-accounting@trixie', written: true }]);
    const m = await mergeResults([a, c]);
    expect(m.passed).toBe(false);
    expect(m.missing).toEqual([`run guest-release@trixie of ${a} (shard 1/3): no results.json`, 'shard 2/3: not among the inputs']);
  });
});
