import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { BisectResult } from '../../src/bisect/bisect-result.js';
import { packageRoot } from '../../src/util/paths.js';
import { testRuntimeRoot } from '../helpers/lab.js';
import { liveLabQemuPids } from '../helpers/processes.js';
import { scratchDir } from '../helpers/scratch.js';

const cli = join(packageRoot, 'dist/cli/main.js');
const AGAIN = 'registering the same region again in the container';

/**
 * A bisection of a planted regression: scripts/bisect-history.sh puts six commits on Debian's 6.12 source (as the
 * git repository `tcelab kernel source debian-source:trixie` makes of it) — two unrelated, one that does not build,
 * its fix, the one that drops the EBUSY of a second registration of a region in a container, one more unrelated —
 * and `tcelab bisect` must name the planted commit and skip the one that does not build. Every step builds in the
 * build dir the suite's debian-source:trixie kernel was built in (the history descends from the same commit):
 * incrementally, a few objects a step. Four steps of a build and a lab each: longer than the suite's files may
 * take, so it runs in the slow checks (scripts/ci-slow-checks.sh sets TCELAB_SLOW_CHECKS=1).
 */
describe.runIf(process.env.TCELAB_SLOW_CHECKS === '1')('tcelab bisect', () => {
  const made: string[] = [];
  afterAll(() => {
    for (const d of made) rmSync(d, { recursive: true, force: true });
  });

  it('names the commit that broke the EBUSY of a second registration, and skips the one that does not build', () => {
    // Its stdout: the repository, then the commit of Debian's source (its HEAD).
    const base = execFileSync(process.execPath, [cli, 'kernel', 'source', 'debian-source:trixie'], { encoding: 'utf8' }).split('\n')[0]!;
    const work = scratchDir('bisect');
    made.push(work);
    const tree = join(work, 'history');
    const lines = execFileSync('bash', [join(packageRoot, 'scripts/bisect-history.sh'), base, tree], { encoding: 'utf8' });
    const commits = Object.fromEntries(
      lines
        .trim()
        .split('\n')
        .map((l) => l.split(' ') as [string, string]),
    );
    expect(Object.keys(commits)).toEqual(['base', 'c1', 'c2', 'c3', 'c4', 'c5', 'c6']);
    const root = testRuntimeRoot();
    const results = join(work, 'results');
    const r = spawnSync(
      process.execPath,
      [
        cli,
        'bisect',
        'prereg-accounting',
        ...['--tree', tree, '--good', commits.base!, '--bad', commits.c6!, '--check', AGAIN, '--results', results, '--json'],
      ],
      { env: { ...process.env, TCELAB_RUNTIME_DIR: root }, encoding: 'utf8', timeout: 40 * 60_000 },
    );
    expect(r.status, r.stderr.slice(-4000)).toBe(0);
    const result = JSON.parse(r.stdout) as BisectResult;
    expect(JSON.parse(readFileSync(join(results, 'bisect.json'), 'utf8'))).toEqual(result);
    expect(result.outcome).toBe('first-bad');
    expect(result.firstBad).toEqual({ commit: commits.c5, subject: 'vfio/spapr_tce: a second registration of a region is not an error' });
    const byCommit = new Map(result.steps.map((s) => [s.commit, s]));
    // The commit that does not build was offered (it is the middle one) and skipped for that reason, with the compiler's words.
    const c3 = byCommit.get(commits.c3!);
    expect(c3, JSON.stringify(result.steps, null, 2)).toBeDefined();
    expect(c3).toMatchObject({
      judgement: 'skip',
      why: expect.stringMatching(/^the kernel does not build: drivers\/vfio\/vfio_iommu_spapr_tce\.c:\d+:\d+: error: /),
    });
    // The planted commit was tested and failed the check; the ones before it passed it.
    expect(byCommit.get(commits.c5!)).toMatchObject({ judgement: 'bad', check: { name: AGAIN, status: 'fail', expected: 'error EBUSY' } });
    for (const s of result.steps.filter((x) => x.judgement === 'good')) {
      expect(s.check).toMatchObject({ status: 'pass', measured: 'error EBUSY' });
      expect([commits.c1, commits.c2, commits.c4]).toContain(s.commit);
    }
    // Incremental: no step compiled the kernel from scratch.
    for (const s of result.steps) expect(s.build?.compiled ?? 0, `${s.subject}: ${s.build?.compiled} objects`).toBeLessThan(100);
    expect(readFileSync(join(results, 'bisect.md'), 'utf8')).toContain(`first bad commit: ${commits.c5}`);
    // The user's tree is as it was: its branch, no worktree, no bisection.
    const git = (...a: string[]) => execFileSync('git', ['-C', tree, ...a], { encoding: 'utf8' }).trim();
    expect(git('rev-parse', 'HEAD')).toBe(commits.c6);
    expect(git('symbolic-ref', 'HEAD')).toBe('refs/heads/bisect-history');
    expect(git('status', '--porcelain')).toBe('');
    expect(git('worktree', 'list', '--porcelain').match(/^worktree /gm)).toHaveLength(1);
    expect(git('for-each-ref', 'refs/bisect')).toBe('');
    expect(liveLabQemuPids(root)).toEqual([]);
  });
});
