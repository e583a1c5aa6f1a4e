import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { packageRoot } from '../../src/util/paths.js';
import { liveLabQemuPids } from '../helpers/processes.js';
import { runtimeDirsIn, TEST_ROOT_PREFIX } from '../helpers/lab.js';
import { kcidbValidator } from '../helpers/kcidb.js';
import { type FinalResults, Parser } from 'tap-parser';
import { scratchDir } from '../helpers/scratch.js';

const cli = join(packageRoot, 'dist/cli/main.js');

describe('suites from the CLI', () => {
  it('runs a scenario file twice in parallel labs (--repeat 2 --jobs 2) with JUnit, KCIDB and KTAP output', async () => {
    const root = mkdtempSync(TEST_ROOT_PREFIX);
    const results = scratchDir('res');
    const r = spawnSync(
      process.execPath,
      [
        cli,
        'run',
        'window-map-release',
        '--repeat',
        '2',
        '--jobs',
        '2',
        '--results',
        results,
        '--json',
        '--kcidb',
        join(results, 'kcidb.json'),
        '--ktap',
        join(results, 'results.ktap'),
      ],
      {
        env: { ...process.env, TCELAB_RUNTIME_DIR: root },
        encoding: 'utf8',
        timeout: 300_000,
      },
    );
    expect(r.status, r.stderr.slice(-2000)).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out).toMatchObject({ passed: true, jobs: 2 });
    expect(out.runs.map((x: { label: string }) => x.label)).toEqual(['window-map-release-r1', 'window-map-release-r2']);
    // Both labs were up at the same time: their lines interleave in the progress output.
    expect(r.stderr).toMatch(/\[window-map-release-r1\][\s\S]*\[window-map-release-r2\][\s\S]*\[window-map-release-r1\]/);
    const junit = readFileSync(join(results, 'junit.xml'), 'utf8');
    expect(junit.match(/<testsuite /g)?.length).toBe(2);
    expect(existsSync(join(results, 'window-map-release-r2', 'timeline.svg'))).toBe(true);
    // What KernelCI and KTAP readers get: valid against KCIDB's published schema, read by a real TAP parser.
    const kcidb = JSON.parse(readFileSync(join(results, 'kcidb.json'), 'utf8'));
    const validate = kcidbValidator();
    expect(validate(kcidb), JSON.stringify(validate.errors)).toBe(true);
    expect(kcidb.builds).toHaveLength(1);
    // Two runs of the same test: one path, two ids.
    const paths = kcidb.tests.map((t: { path: string }) => t.path);
    expect(paths.every((p: string) => p.startsWith('tcelab.window-map-release.'))).toBe(true);
    expect(new Set(paths).size).toBe(paths.length / 2);
    const ktap = readFileSync(join(results, 'results.ktap'), 'utf8');
    const parsed = await new Promise<FinalResults>((resolve) => new Parser((res) => resolve(res)).end(ktap));
    expect(parsed).toMatchObject({ ok: true, count: 2, pass: 2 });
    // The same from a finished run's results dir, KTAP on stdout.
    const again = spawnSync(process.execPath, [cli, 'report', join(results, 'window-map-release-r1'), '--ktap'], { encoding: 'utf8' });
    expect(again.status).toBe(0);
    expect(again.stdout).toMatch(/^KTAP version 1\n1\.\.1\n {4}KTAP version 1\n {4}# Subtest: window-map-release\n/);
    expect(liveLabQemuPids(root)).toEqual([]);
    expect(runtimeDirsIn(root)).toEqual([]);
  });

  it('lists profiles and scenarios, and rejects bad flags with a clear error', () => {
    const list = spawnSync(process.execPath, [cli, 'list', '--json'], { encoding: 'utf8' });
    expect(JSON.parse(list.stdout).scenarios.map((s: { name: string }) => s.name)).toContain('shutdown-release');
    const bad = spawnSync(process.execPath, [cli, 'run', '--all', '--shard', '5/3', '--dry-run'], { encoding: 'utf8' });
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/--shard: 5\/3: must be i\/n/);
    expect(bad.stderr).not.toMatch(/at .*\.js:\d+/);
    const jobs = spawnSync(process.execPath, [cli, 'run', '--all', '--jobs', '0', '--dry-run'], { encoding: 'utf8' });
    expect(jobs.stderr).toMatch(/--jobs: 0: must be an integer from 1 to 16/);
    const unknown = spawnSync(process.execPath, [cli, 'run', 'no-such-thing'], { encoding: 'utf8' });
    expect(unknown.status).toBe(2);
    expect(unknown.stderr).toMatch(/tcelab run: no-such-thing: is neither a scenario nor a profile[\s\S]*profiles: emulated/);
    const flag = spawnSync(process.execPath, [cli, 'run', '--bogus'], { encoding: 'utf8' });
    expect(flag.status).toBe(2);
    expect(flag.stderr).toMatch(/Unknown argument: bogus/);
  });
});
