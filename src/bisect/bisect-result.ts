import type { JudgedStep, Judgement } from './judge.js';

/** One commit tested: what was built, what ran, what was measured, and the judgement with why. */
export interface BisectStep {
  step: number;
  commit: string;
  subject: string;
  /** git's estimate, when it offered the commit, of the steps still to come after it. */
  stepsLeft?: number;
  kernel: string;
  /** The kernel's build: wall time (export of the commit, configure, make, modules_install), make's own time, objects compiled. */
  build?: { ms: number; makeMs: number; compiled: number; release: string };
  buildError?: string;
  /** The guest image assembled around the kernel. */
  imageMs?: number;
  /** The scenario's run: wall time, its verdict and results dir. */
  lab?: { ms: number; passed: boolean; resultsDir: string; error?: string };
  labError?: string;
  judgement: Judgement;
  why: string;
  check?: JudgedStep['check'];
  ms: number;
}

/** A bisection's outcome: the first bad commit, or the commits it could be among when skips leave it open. bisect.json is this. */
export interface BisectResult {
  scenario: string;
  profile: string;
  check?: string;
  tree: string;
  good: { ref: string; commit: string; subject: string };
  bad: { ref: string; commit: string; subject: string };
  kconfig: string[];
  startedAt: string;
  durationMs: number;
  outcome: 'first-bad' | 'only-skipped' | 'interrupted' | 'error';
  firstBad?: { commit: string; subject: string };
  /** With only skipped commits left: the commits the first bad one is among, each with what this bisection made of it. */
  candidates?: Array<{ commit: string; subject: string; judgement?: Judgement; why?: string }>;
  error?: string;
  steps: BisectStep[];
  /** `git bisect log`: replayable with `git bisect replay`. */
  gitLog: string;
  resultsDir: string;
}
