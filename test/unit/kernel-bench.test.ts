import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { benchKernelTree, EDITED_FILE, editSource } from '../../src/bench/bench-kernel-tree.js';
import { against, coldBuildLine, duration, phaseLines, phaseOf, phaseRows, samples } from '../../src/bench/kernel-bench-report.js';
import { childrenCpuMs } from '../../src/bench/stats.js';
import { TimedProgress } from '../../src/bench/timed-progress.js';
import { BUILD_RECORD, ccacheIsEmpty, coldBuildsIn } from '../../src/kbuild/build-record.js';
import { silentProgress } from '../../src/util/progress.js';

/** Temporary dirs of these tests, removed after them. */
const made: string[] = [];
const tempDir = (prefix: string) => {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  made.push(dir);
  return dir;
};
afterAll(() => {
  for (const dir of made) rmSync(dir, { recursive: true, force: true });
});

const cold = { at: '2026-12-07T04:56:12.345Z', ms: 1_089_000, objects: 937, emptyCcache: true, jobs: 2 };

describe('the kernel-build bench: what it prints', () => {
  it('names the library steps as phases and puts what no step covered in a row of its own', () => {
    expect(phaseOf('configure /src/linux (allnoconfig + the lab fragment, 0 of yours)')).toBe('configure (allnoconfig + the lab fragment)');
    expect(phaseOf('build /src/linux (make -j2 vmlinux modules, ccache)')).toBe('make vmlinux modules');
    expect(phaseOf('install the modules of 6.12.117+')).toBe('make modules_install');
    expect(phaseOf('something new')).toBe('something new');
    const rows = phaseRows(
      [
        { label: 'configure t (allnoconfig …)', ms: 8000 },
        { label: 'build t (make -j2 vmlinux modules, ccache)', ms: 12000 },
        { label: 'assemble initramfs', ms: 2000 },
        { label: 'assemble initramfs', ms: 500 },
      ],
      25_000,
      'the rest',
    );
    expect(rows).toEqual([
      { phase: 'configure (allnoconfig + the lab fragment)', ms: 8000 },
      { phase: 'make vmlinux modules', ms: 12000 },
      { phase: 'assemble the initramfs', ms: 2500 },
      { phase: 'the rest', ms: 2500 },
    ]);
    expect(phaseRows([{ label: 'x', ms: 10 }], 5, 'rest').at(-1)).toEqual({ phase: 'rest', ms: 0 });
    expect(phaseLines([{ phase: 'make', ms: 12345 }], 10)).toEqual(['  make         12.3 s']);
  });

  it('says each figure against its target, durations in seconds or minutes, samples with their median', () => {
    expect(against(24.1, 30, ' s')).toBe('(target ≤ 30 s: met)');
    expect(against(0.51, 0.5)).toBe('(target ≤ 0.5: missed)');
    expect(duration(22_240)).toBe('22.2 s');
    expect(duration(1_089_400)).toBe('18 min 09 s');
    expect(samples([2510, 2470, 2400])).toBe('median 2.47 s  [2.51, 2.47, 2.40]');
    expect(coldBuildLine({ out: '/c/trees/tree-x-4k', describe: '/t', release: '6.12.117+', cold })).toBe(
      '18 min 09 s, 937 objects, -j2, empty ccache, 2026-12-07 04:56 UTC: /t (6.12.117+) in /c/trees/tree-x-4k',
    );
    expect(coldBuildLine({ out: '/o', cold: { ...cold, emptyCcache: false } })).toContain('ccache not empty');
  });

  it("reads its children's CPU time from /proc/<pid>/stat, whatever the command's name holds", () => {
    const stat = '4242 (node a) b) S 1 4242 4242 0 -1 4194304 100 200 0 0 50 7 112900 1100 20 0 11 0 1 2 3';
    expect(childrenCpuMs(stat)).toBe(1_140_000);
    expect(childrenCpuMs(readFileSync('/proc/self/stat', 'utf8'))).toBeGreaterThanOrEqual(0);
  });

  it('keeps the duration of each step it shows', async () => {
    const p = new TimedProgress(silentProgress);
    await p.step('one', async () => new Promise((r) => setTimeout(r, 20)));
    await expect(p.step('two', async () => Promise.reject(new Error('no')))).rejects.toThrow('no');
    expect(p.steps.map((s) => s.label)).toEqual(['one', 'two']);
    expect(p.steps[0]!.ms).toBeGreaterThanOrEqual(15);
    expect(p.since(1).map((s) => s.label)).toEqual(['two']);
  });
});

describe('the kernel-build bench: records of cold builds', () => {
  it('lists the O= dirs whose record keeps a cold build, oldest first', async () => {
    const dir = tempDir('tcelab-records-');
    const put = (name: string, record: object) => {
      mkdirSync(join(dir, name));
      writeFileSync(join(dir, name, BUILD_RECORD), JSON.stringify(record));
    };
    put('a-4k', { release: '6.12.117', source: { describe: 'a' }, coldBuild: cold, format: 2 });
    put('b-4k', { release: '6.12.117+', source: { describe: 'b' }, coldBuild: { ...cold, at: '2026-12-06T00:00:00Z' }, format: 2 });
    put('c-4k', { release: '6.12.117+', compiled: 1, format: 2 });
    mkdirSync(join(dir, 'd-4k'));
    const found = await coldBuildsIn(dir);
    expect(found.map((f) => f.describe)).toEqual(['b', 'a']);
    expect(found[1]).toEqual({ out: join(dir, 'a-4k'), describe: 'a', release: '6.12.117', cold });
    expect(await coldBuildsIn(join(dir, 'none'))).toEqual([]);
  });

  it('tells an empty ccache dir (missing, fresh, cleared) from one holding results', async () => {
    const dir = tempDir('tcelab-ccache-');
    expect(await ccacheIsEmpty(join(dir, 'missing'))).toBe(true);
    expect(await ccacheIsEmpty(dir)).toBe(true);
    mkdirSync(join(dir, 'a', '3'), { recursive: true });
    writeFileSync(join(dir, 'a', 'stats'), '0');
    expect(await ccacheIsEmpty(dir)).toBe(true);
    writeFileSync(join(dir, 'a', '3', '1dnmq8cqafciftd0ieu53m5ds9bth8eR'), 'x');
    expect(await ccacheIsEmpty(dir)).toBe(false);
  });
});

describe('the kernel-build bench: its clone of a tree', () => {
  const git = (cwd: string, ...args: string[]) =>
    execFileSync('git', ['-c', 'user.name=t', '-c', 'user.email=t@t', ...args], { cwd, encoding: 'utf8' }).trim();

  it('clones the base once, follows it to a new commit, and edits the driver differently each run', async () => {
    const base = tempDir('tcelab-base-');
    const cache = tempDir('tcelab-cache-');
    mkdirSync(join(base, 'drivers', 'vfio'), { recursive: true });
    writeFileSync(join(base, EDITED_FILE), 'int x;\n');
    git(base, 'init', '-q');
    git(base, 'add', '-A');
    git(base, 'commit', '-q', '-m', 'one');
    const dir = await benchKernelTree(base, git(base, 'rev-parse', 'HEAD'), cache);
    expect(dir).toBe(join(cache, 'bench', 'kernel-tree'));
    expect(readFileSync(join(dir, '.git', 'objects', 'info', 'alternates'), 'utf8')).toContain(base);

    await editSource(dir, 'run 1');
    await editSource(dir, 'run 2');
    expect(readFileSync(join(dir, EDITED_FILE), 'utf8')).toBe('int x;\n/* tcelab bench: edited run 2 */\n');

    writeFileSync(join(base, EDITED_FILE), 'int y;\n');
    git(base, 'commit', '-q', '-am', 'two');
    const second = git(base, 'rev-parse', 'HEAD');
    expect(await benchKernelTree(base, second, cache)).toBe(dir);
    expect(git(dir, 'rev-parse', 'HEAD')).toBe(second);
    expect(readFileSync(join(dir, EDITED_FILE), 'utf8')).toBe('int y;\n');
    // Real git commands: a loaded machine (a kernel build beside) takes seconds over them.
  }, 60_000);
});
