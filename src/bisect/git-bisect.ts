import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { commitOf, gitTop } from '../kbuild/git-tree.js';
import { InputError, TcelabError } from '../util/errors.js';
import { run } from '../util/exec.js';

/**
 * git's own bisection, driven from outside: git is the state machine (which commit to test next, when the first bad
 * one is known, when only skipped ones are left); tcelab only judges. It runs in a worktree of its own, detached and
 * never checked out (`git worktree add --no-checkout`, `git bisect start --no-checkout`: the commit to test is
 * BISECT_HEAD), so the user's work tree, index, HEAD and any bisection of theirs are never touched; the builds take
 * each commit from the repository itself (tree:<path>@<commit>).
 */

/** What git said after starting or marking: the next commit to test, the first bad commit, or only skipped ones left. */
export type BisectState =
  | {
      kind: 'testing';
      commit: string;
      /** git's estimate: revisions left to test after this one, and steps that takes (absent when it tests a merge base). */
      revisionsLeft?: number;
      stepsLeft?: number;
    }
  | { kind: 'first-bad'; commit: string }
  | { kind: 'only-skipped'; candidates: string[] };

const HASH = '[0-9a-f]{40,64}';

/**
 * Reads git bisect's words (LC_ALL=C) into a state. Its lines are, in order of precedence: "<hash> is the first bad
 * commit"; "There are only 'skip'ped commits left to test." with the candidates, one hash a line, after "The first
 * bad commit could be any of:"; "Bisecting: N revisions left to test after this (roughly M steps)" or "Bisecting: a
 * merge base must be tested", then "[<hash>] <subject>".
 */
export function parseBisectOutput(text: string): BisectState {
  const firstBad = new RegExp(`^(${HASH}) is the first bad commit$`, 'm').exec(text);
  if (firstBad) return { kind: 'first-bad', commit: firstBad[1]! };
  if (/^There are only 'skip'ped commits left to test\.$/m.test(text)) {
    const after = text.slice(text.indexOf('could be any of:'));
    const candidates = [...after.matchAll(new RegExp(`^(${HASH})$`, 'gm'))].map((m) => m[1]!);
    if (candidates.length === 0) throw unexpected(text);
    return { kind: 'only-skipped', candidates };
  }
  const next = new RegExp(`^\\[(${HASH})\\]`, 'm').exec(text);
  if (/^Bisecting: /m.test(text) && next) {
    const estimate = /^Bisecting: (\d+) revisions? left to test after this \(roughly (\d+) steps?\)$/m.exec(text);
    return {
      kind: 'testing',
      commit: next[1]!,
      ...(estimate ? { revisionsLeft: Number(estimate[1]), stepsLeft: Number(estimate[2]) } : {}),
    };
  }
  throw unexpected(text);
}

const unexpected = (text: string) =>
  new TcelabError(
    'git bisect',
    `said something tcelab does not understand:\n    ${text.trim().split('\n').slice(0, 12).join('\n    ')}`,
    'a git older than 2.25 words its bisection differently: use a newer git',
  );

/** The tree and the two ends of a bisection, resolved and checked. */
export interface BisectTree {
  /** The tree's top (the git tree builds take commits from). */
  top: string;
  good: { ref: string; commit: string };
  bad: { ref: string; commit: string };
}

/** git with its messages in English (they are parsed) and never a prompt. */
const GIT_ENV = { ...process.env, LC_ALL: 'C', LANGUAGE: 'C', GIT_TERMINAL_PROMPT: '0' };

const git = (cwd: string, args: string[], what: string) =>
  run('git', ['-C', cwd, ...args], { what, env: GIT_ENV, hint: 'is git installed? (scripts/bootstrap.sh installs it)' });

/**
 * A bisect command, read whatever its exit code: git ends with 2 when only skipped commits are left (and says so on
 * stdout). What it said is parsed; a failure it explains on stderr alone is an error with its words.
 */
function bisectCommand(cwd: string, args: string[]): Promise<BisectState> {
  return new Promise((resolve, reject) => {
    execFile('git', ['-C', cwd, 'bisect', ...args], { env: GIT_ENV, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      try {
        resolve(parseBisectOutput(stdout));
      } catch (parseError) {
        const words = stderr.trim().split('\n').slice(-8).join('\n    ');
        reject(err ? new TcelabError(`git bisect ${args.join(' ')}`, `failed: ${words || err.message}`) : parseError);
      }
    });
  });
}

/**
 * --tree, --good and --bad, checked before anything starts: a git tree of a kernel, two refs that name commits,
 * different ones, the good one an ancestor of the bad one. Each failure is bad input naming its flag.
 */
export async function resolveBisectTree(path: string, good: string, bad: string): Promise<BisectTree> {
  const top = await gitTop(path, { field: '--tree', text: path });
  const goodCommit = await commitOf(top, good, { field: '--good', text: good });
  const badCommit = await commitOf(top, bad, { field: '--bad', text: bad });
  if (goodCommit === badCommit) throw new InputError('--good', good, `names the same commit as --bad ${bad} (${goodCommit.slice(0, 12)})`);
  const ancestor = await git(top, ['merge-base', '--is-ancestor', goodCommit, badCommit], 'git merge-base --is-ancestor').then(
    () => true,
    () => false,
  );
  if (!ancestor) {
    throw new InputError(
      '--good',
      good,
      `${goodCommit.slice(0, 12)} is not an ancestor of --bad ${bad} (${badCommit.slice(0, 12)})`,
      'a bisection looks for the first bad commit after a good one: --good must be older, on the history of --bad ' +
        '(to find the commit that fixed something, judge the fix as "bad": bisect a check that fails once fixed)',
    );
  }
  return { top, good: { ref: good, commit: goodCommit }, bad: { ref: bad, commit: badCommit } };
}

/** One subject line of a commit. */
export const commitSubject = async (top: string, commit: string): Promise<string> =>
  (await git(top, ['log', '-1', '--format=%s', commit], `read the subject of ${commit}`)).stdout.trim();

/** A bisection in a detached worktree of its own; close() removes the worktree (and with it the bisection's state). */
export class GitBisect {
  private constructor(
    private readonly tree: BisectTree,
    /** The worktree: git's bisection state (refs/bisect/*, BISECT_HEAD, BISECT_LOG) is per worktree. */
    readonly worktree: string,
    private readonly parent: string,
  ) {}

  /** Makes the worktree and starts the bisection: the state names the first commit to test (or, rarely, the answer). */
  static async start(tree: BisectTree): Promise<{ bisect: GitBisect; state: BisectState }> {
    const parent = await mkdtemp(join(tmpdir(), 'tcelab-bisect-'));
    const worktree = join(parent, 'worktree');
    await git(tree.top, ['worktree', 'add', '--detach', '--no-checkout', worktree, tree.bad.commit], `git worktree add ${worktree}`).catch(
      async (err: unknown) => {
        await rm(parent, { recursive: true, force: true });
        throw err;
      },
    );
    const bisect = new GitBisect(tree, worktree, parent);
    try {
      return { bisect, state: await bisectCommand(worktree, ['start', '--no-checkout', tree.bad.commit, tree.good.commit]) };
    } catch (err) {
      await bisect.close();
      throw err;
    }
  }

  /** Marks a commit good, bad or skipped; git answers with the next state. */
  async mark(commit: string, judgement: 'good' | 'bad' | 'skip'): Promise<BisectState> {
    return bisectCommand(this.worktree, [judgement, commit]);
  }

  /** git's own record of the bisection (`git bisect log`): what a person can replay with `git bisect replay`. */
  async log(): Promise<string> {
    return (await git(this.worktree, ['bisect', 'log'], 'git bisect log')).stdout;
  }

  /** Removes the worktree and its administrative files in the repository; safe to call twice. */
  async close(): Promise<void> {
    await git(this.tree.top, ['worktree', 'remove', '--force', this.worktree], `git worktree remove ${this.worktree}`).catch(() => {});
    await rm(this.parent, { recursive: true, force: true });
    // Whatever remove left (it failed, or the dir was gone already): git forgets worktrees whose dir is gone.
    await git(this.tree.top, ['worktree', 'prune'], 'git worktree prune').catch(() => {});
  }
}
