import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { bisectOutcomeLine, bisectPage, formatSeconds, stepLine } from '../../src/bisect/bisect-page.js';
import type { BisectResult, BisectStep } from '../../src/bisect/bisect-result.js';
import { GitBisect, parseBisectOutput, resolveBisectTree } from '../../src/bisect/git-bisect.js';
import { buildErrorLine, judgeBuildFailure, judgeLabFailure, judgeReport, RAN_TO_THE_END } from '../../src/bisect/judge.js';
import type { Check } from '../../src/scenario/checks.js';
import type { ScenarioReport } from '../../src/scenario/scenario.js';
import { InputError } from '../../src/util/errors.js';
import { scratchDir } from '../helpers/scratch.js';

const A = 'c6b53bf555aaa296dec8301c6dace76283059f51';
const B = '263ea58fc37fd523ffa26d116547e88930d4b57a';

describe("git bisect's words (git 2.39, LC_ALL=C)", () => {
  it('the next commit to test, with the estimate', () => {
    expect(parseBisectOutput(`Bisecting: 2 revisions left to test after this (roughly 2 steps)\n[${A}] c3\n`)).toEqual({
      kind: 'testing',
      commit: A,
      revisionsLeft: 2,
      stepsLeft: 2,
    });
    expect(parseBisectOutput(`Bisecting: 1 revision left to test after this (roughly 1 step)\n[${B}] c4\n`)).toMatchObject({
      revisionsLeft: 1,
      stepsLeft: 1,
    });
    // A merge base to test: no estimate.
    expect(parseBisectOutput(`Bisecting: a merge base must be tested\n[${A}] merge base\n`)).toEqual({ kind: 'testing', commit: A });
  });

  it('the first bad commit, whatever git prints after it', () => {
    const text =
      `${B} is the first bad commit\ncommit ${B}\nAuthor: a <a@b>\nDate:   Mon Dec 7 06:24:07 2026 +0000\n\n    c5\n\n` +
      ` f5 | 1 +\n 1 file changed, 1 insertion(+)\n`;
    expect(parseBisectOutput(text)).toEqual({ kind: 'first-bad', commit: B });
  });

  it('only skipped commits left: the candidates', () => {
    const text = `There are only 'skip'ped commits left to test.\nThe first bad commit could be any of:\n${A}\n${B}\nWe cannot bisect more!\n`;
    expect(parseBisectOutput(text)).toEqual({ kind: 'only-skipped', candidates: [A, B] });
  });

  it('anything else is an error that shows what git said', () => {
    expect(() => parseBisectOutput('status: waiting for both good and bad commits\n')).toThrow(/does not understand:\n {4}status: waiting/);
  });
});

const check = (name: string, status: Check['status'], extra: Partial<Check> = {}): Check => ({
  name,
  pass: status !== 'fail',
  status,
  expected: 'error EBUSY',
  measured: status === 'pass' ? 'error EBUSY' : 'success 0',
  atMs: 0,
  ...extra,
});
const report = (checks: Check[], error?: string): ScenarioReport =>
  ({
    scenario: 's',
    checks,
    error,
    passed: !error && checks.every((c) => c.status !== 'fail'),
    resultsDir: '/r',
  }) as unknown as ScenarioReport;
const AGAIN = 'registering the same region again in the container';

describe('judging a commit by its run', () => {
  it('by the named check: pass is good, fail and known defect are bad, n/a is skip', () => {
    expect(judgeReport(report([check(AGAIN, 'pass')]), AGAIN)).toEqual({
      judgement: 'good',
      why: 'the check passed: measured error EBUSY',
      check: { name: AGAIN, status: 'pass', measured: 'error EBUSY', expected: 'error EBUSY' },
    });
    expect(judgeReport(report([check(AGAIN, 'fail'), check('other', 'pass')]), AGAIN)).toMatchObject({
      judgement: 'bad',
      why: 'the check failed: measured success 0, expected error EBUSY',
    });
    const defect = check(AGAIN, 'known-defect', { knownDefect: 'defect 1' });
    expect(judgeReport(report([defect]), AGAIN)).toMatchObject({
      judgement: 'bad',
      why: 'the check reproduced a known defect: measured success 0, expected error EBUSY',
      check: { knownDefect: 'defect 1' },
    });
    expect(judgeReport(report([check(AGAIN, 'not-applicable', { notApplicable: '64 KiB pages' })]), AGAIN)).toMatchObject({
      judgement: 'skip',
      why: 'the check does not apply here: 64 KiB pages',
    });
  });

  it('by the named check: the other checks do not matter, a check recorded twice is judged by its worst', () => {
    expect(judgeReport(report([check('other', 'fail'), check(AGAIN, 'pass')]), AGAIN).judgement).toBe('good');
    expect(judgeReport(report([check(AGAIN, 'pass'), check(AGAIN, 'fail')]), AGAIN).judgement).toBe('bad');
  });

  it('the check reached before the scenario stopped judges; one not reached is a skip', () => {
    const stopped = report([check(AGAIN, 'fail'), check(RAN_TO_THE_END, 'fail')], 'agent: timeout');
    expect(judgeReport(stopped, AGAIN).judgement).toBe('bad');
    expect(judgeReport(report([check(RAN_TO_THE_END, 'fail')], 'guest: kernel panic\n  more'), AGAIN)).toEqual({
      judgement: 'skip',
      why: 'the scenario stopped before the check: guest: kernel panic',
    });
    expect(judgeReport(report([check('other', 'pass')]), AGAIN).judgement).toBe('skip');
  });

  it('by the verdict: passed (known defects included) is good, a failed check bad, a stop with no failed check skip', () => {
    expect(judgeReport(report([check('a', 'pass'), check('b', 'known-defect')]))).toEqual({
      judgement: 'good',
      why: 'the verdict passed: 1/2 checks, 1 known defects',
    });
    expect(judgeReport(report([check('a', 'pass'), check('b', 'fail')]))).toMatchObject({
      judgement: 'bad',
      why: 'the verdict failed: b (measured success 0, expected error EBUSY)',
    });
    expect(judgeReport(report([check('a', 'pass'), check(RAN_TO_THE_END, 'fail')], 'QEMU exited'))).toEqual({
      judgement: 'skip',
      why: 'the scenario stopped without a failed check: QEMU exited',
    });
  });

  it('a build that fails is a skip naming the compiler’s first error; a lab that did not run, a skip with its error', () => {
    const failure =
      'build /t@abc: make exited with code 2:\n    ../drivers/vfio/vfio_iommu_spapr_tce.c:153:17: error: expected ‘;’ before ‘goto’\n' +
      '    make[1]: *** [Makefile:224: __sub-make] Error 2';
    expect(buildErrorLine(failure)).toBe('../drivers/vfio/vfio_iommu_spapr_tce.c:153:17: error: expected ‘;’ before ‘goto’');
    expect(judgeBuildFailure(failure)).toEqual({
      judgement: 'skip',
      why: 'the kernel does not build: ../drivers/vfio/vfio_iommu_spapr_tce.c:153:17: error: expected ‘;’ before ‘goto’',
    });
    expect(judgeBuildFailure('configure x: CONFIG_VFIO=m came out not set').why).toBe(
      'the kernel does not build: configure x: CONFIG_VFIO=m came out not set',
    );
    expect(judgeLabFailure('kernel tree:x: lacks VFIO\n  what to do: …')).toEqual({
      judgement: 'skip',
      why: 'the lab did not run: kernel tree:x: lacks VFIO',
    });
  });
});

describe('the log of a bisection', () => {
  const step = (n: number, commit: string, extra: Partial<BisectStep>): BisectStep => ({
    step: n,
    commit,
    subject: `c${n}`,
    kernel: `tree:/t@${commit}`,
    judgement: 'good',
    why: 'the check passed: measured error EBUSY',
    ms: 60_000,
    ...extra,
  });
  const result = (extra: Partial<BisectResult>): BisectResult => ({
    scenario: 'prereg-accounting',
    profile: 'emulated',
    check: AGAIN,
    tree: '/t',
    good: { ref: 'base', commit: A, subject: 'Debian' },
    bad: { ref: 'c6', commit: B, subject: 'c6 | pipes' },
    kconfig: [],
    startedAt: '2026-12-07T00:00:00.000Z',
    durationMs: 185_000,
    outcome: 'first-bad',
    firstBad: { commit: B, subject: 'vfio: break it' },
    steps: [
      step(1, A, {
        build: { ms: 21_000, makeMs: 19_000, compiled: 0, release: '6.12' },
        judgement: 'skip',
        why: 'the kernel does not build: x',
      }),
      step(2, B, {
        build: { ms: 9_400, makeMs: 8_000, compiled: 3, release: '6.12' },
        lab: { ms: 41_000, passed: true, resultsDir: '/r/step-2' },
        check: { name: AGAIN, status: 'pass', measured: 'error EBUSY', expected: 'error EBUSY' },
      }),
    ],
    gitLog: 'git bisect start\n',
    resultsDir: '/r',
    ...extra,
  });

  it('one line per step, with its build, lab, measured value and judgement', () => {
    const r = result({});
    expect(stepLine({ ...r.steps[1]!, stepsLeft: 2 }, 4)).toBe(
      `step 2/~4: ${B.slice(0, 12)} c2: build 9.4 s (3 compiled), lab 41 s, check error EBUSY: good (the check passed: measured error EBUSY)`,
    );
    expect(stepLine({ ...r.steps[0]!, build: undefined, buildError: 'x' }, 3)).toMatch(/: does not build: skip \(/);
    expect(formatSeconds(185_000)).toBe('3 min 05 s');
  });

  it('the answer: the first bad commit, or the commits it is among', () => {
    expect(bisectOutcomeLine(result({}))).toBe(`first bad commit: ${B} vfio: break it`);
    const open = result({
      outcome: 'only-skipped',
      firstBad: undefined,
      candidates: [
        { commit: A, subject: 'c3', judgement: 'skip', why: 'the kernel does not build: x' },
        { commit: B, subject: 'c4' },
      ],
    });
    expect(bisectOutcomeLine(open)).toBe(
      'no single first bad commit: only skipped commits are left, the first bad one is among ' +
        `${A.slice(0, 12)} c3 (skipped); ${B.slice(0, 12)} c4`,
    );
  });

  it('the page: the answer, the inputs, a row per step (pipes escaped), totals and git’s log', () => {
    const page = bisectPage(result({}));
    expect(page).toContain(`**first bad commit: ${B} vfio: break it**`);
    expect(page).toContain('- bad: c6 = `263ea58fc37f` c6 \\| pipes');
    expect(page).toContain('- 2 steps in 3 min 05 s (builds 30 s, 3 objects compiled; labs 41 s)');
    expect(page).toContain(
      '| 2 | `263ea58fc37f` | c2 | 9.4 s, 3 compiled | 41 s | pass: error EBUSY | **good** | the check passed: measured error EBUSY |',
    );
    expect(page).toContain('```\ngit bisect start\n```');
  });
});

describe('a bisection in a worktree of its own (a real git, a toy tree)', () => {
  const sh = (cwd: string, ...args: string[]) =>
    execFileSync('git', ['-c', 'user.email=t@t', '-c', 'user.name=t', ...args], { cwd, encoding: 'utf8', stdio: 'pipe' }).trim();
  const made: string[] = [];
  const tmp = () => {
    made.push(scratchDir('bisect-test'));
    return made.at(-1)!;
  };
  afterAll(() => {
    for (const d of made) rmSync(d, { recursive: true, force: true });
  });
  /** c0 … c6 on a tree that looks like a kernel's; the user has a local change and a branch checked out. */
  const history = () => {
    const dir = tmp();
    mkdirSync(join(dir, 'arch', 'powerpc'), { recursive: true });
    writeFileSync(join(dir, 'Kconfig'), 'mainmenu "x"\n');
    sh(dir, 'init', '-q', '-b', 'work');
    const commits: string[] = [];
    for (let i = 0; i <= 6; i++) {
      writeFileSync(join(dir, 'arch', 'powerpc', 'f.c'), `int f = ${i};\n`);
      sh(dir, 'add', '-A');
      sh(dir, 'commit', '-qm', `c${i}`);
      commits.push(sh(dir, 'rev-parse', 'HEAD'));
    }
    writeFileSync(join(dir, 'arch', 'powerpc', 'f.c'), 'int f = 99; /* the user is editing */\n');
    return { dir, commits };
  };

  it('refuses, naming the flag: not a git tree, a ref it lacks, good = bad, good not an ancestor of bad', async () => {
    const { dir, commits } = history();
    const plain = tmp();
    const err = (p: Promise<unknown>) =>
      p.then(
        () => undefined,
        (e: unknown) => e as InputError,
      );
    const notGit = await err(resolveBisectTree(plain, 'a', 'b'));
    expect(notGit).toBeInstanceOf(InputError);
    expect(notGit!.message).toBe(`--tree: ${plain}: ${plain} is not a git tree`);
    expect((await err(resolveBisectTree(dir, 'v0', 'HEAD')))!.message).toMatch(/^--good: v0: .* has no commit "v0"$/);
    expect((await err(resolveBisectTree(dir, 'HEAD~6', 'nope')))!.message).toMatch(/^--bad: nope: /);
    expect((await err(resolveBisectTree(dir, 'HEAD', commits[6]!)))!.message).toMatch(/^--good: HEAD: names the same commit as --bad/);
    const order = await err(resolveBisectTree(dir, 'HEAD', 'HEAD~6'));
    expect(order).toBeInstanceOf(InputError);
    expect(order!.message).toBe(
      `--good: HEAD: ${commits[6]!.slice(0, 12)} is not an ancestor of --bad HEAD~6 (${commits[0]!.slice(0, 12)})`,
    );
    const tree = await resolveBisectTree(join(dir, 'arch'), 'HEAD~6', 'work');
    expect(tree).toEqual({ top: dir, good: { ref: 'HEAD~6', commit: commits[0] }, bad: { ref: 'work', commit: commits[6] } });
  });

  it('git leads: a skip, goods and a bad find the first bad commit; the user’s tree, index and HEAD are untouched', async () => {
    const { dir, commits } = history();
    const status = sh(dir, 'status', '--porcelain');
    const tree = await resolveBisectTree(dir, commits[0]!, commits[6]!);
    const { bisect, state } = await GitBisect.start(tree);
    // c5 broke it; c3 does not build.
    const judge = (c: string) => (c === commits[3] ? 'skip' : commits.indexOf(c) >= 5 ? 'bad' : 'good');
    let s = state;
    const tested: string[] = [];
    try {
      while (s.kind === 'testing') {
        tested.push(s.commit);
        s = await bisect.mark(s.commit, judge(s.commit));
      }
      expect(s).toEqual({ kind: 'first-bad', commit: commits[5] });
      expect(tested).toContain(commits[3]);
      expect(await bisect.log()).toMatch(new RegExp(`# skip: \\[${commits[3]}\\] c3`));
      // Meanwhile the user's repository is not bisecting, and nothing of theirs moved.
      expect(() => sh(dir, 'bisect', 'log')).toThrow();
    } finally {
      await bisect.close();
    }
    expect(existsSync(bisect.worktree)).toBe(false);
    expect(sh(dir, 'worktree', 'list', '--porcelain').match(/^worktree /gm)).toHaveLength(1);
    expect(sh(dir, 'symbolic-ref', 'HEAD')).toBe('refs/heads/work');
    expect(sh(dir, 'status', '--porcelain')).toBe(status);
    expect(sh(dir, 'for-each-ref', 'refs/bisect')).toBe('');
  });

  it('skips around the first bad commit leave the candidates', async () => {
    const { dir, commits } = history();
    const { bisect, state } = await GitBisect.start(await resolveBisectTree(dir, commits[0]!, commits[6]!));
    let s = state;
    try {
      // Nothing from c2 to c5 builds: the first bad commit is any of c2 … c6.
      while (s.kind === 'testing') s = await bisect.mark(s.commit, commits.indexOf(s.commit) >= 2 ? 'skip' : 'good');
    } finally {
      await bisect.close();
    }
    expect(s.kind).toBe('only-skipped');
    expect(new Set(s.kind === 'only-skipped' ? s.candidates : [])).toEqual(new Set(commits.slice(2, 7)));
  });
});
