import type { Check } from '../scenario/checks.js';
import type { ScenarioReport } from '../scenario/scenario.js';

/** What a commit is to git bisect. */
export type Judgement = 'good' | 'bad' | 'skip';

/** A step's judgement, why, and the named check as measured (when it was reached). */
export interface JudgedStep {
  judgement: Judgement;
  why: string;
  check?: { name: string; status: Check['status']; measured: string; expected: string; knownDefect?: string };
}

/**
 * The check the runner records when a scenario's steps stop on an error: it is the scenario that stopped, not the
 * behaviour under test that failed.
 */
export const RAN_TO_THE_END = 'scenario ran to the end';

/** How the named check's status judges a commit: a known defect is the behaviour broken (bad); n/a cannot judge. */
const BY_STATUS: Record<Check['status'], Judgement> = {
  pass: 'good',
  fail: 'bad',
  'known-defect': 'bad',
  'not-applicable': 'skip',
};

/**
 * Judges a commit from its run's report: with a check named, by that check (good when it passed, bad when it failed
 * or reproduced a known defect, skip when it does not apply or was never reached — the scenario stopped before it);
 * without, by the whole verdict (good when it passed; bad when a check failed; skip when the only failure is that the
 * scenario stopped: an error of the lab, not a verdict on the behaviour).
 */
export function judgeReport(report: ScenarioReport, checkName?: string): JudgedStep {
  if (checkName !== undefined) {
    const found = report.checks.filter((c) => c.name === checkName);
    if (found.length === 0) {
      return {
        judgement: 'skip',
        why: report.error
          ? `the scenario stopped before the check: ${firstLine(report.error)}`
          : 'the run recorded no check of that name (the scenario did not reach it on this kernel)',
      };
    }
    // Recorded more than once (a check in a loop): the worst one judges.
    const order: Judgement[] = ['bad', 'good', 'skip'];
    const c = found.reduce((worst, x) => (order.indexOf(BY_STATUS[x.status]) < order.indexOf(BY_STATUS[worst.status]) ? x : worst));
    const judgement = BY_STATUS[c.status];
    const check = {
      name: c.name,
      status: c.status,
      measured: c.measured,
      expected: c.expected,
      ...(c.knownDefect ? { knownDefect: c.knownDefect } : {}),
    };
    const why = {
      good: `the check passed: measured ${c.measured}`,
      bad:
        c.status === 'known-defect'
          ? `the check reproduced a known defect: measured ${c.measured}, expected ${c.expected}`
          : `the check failed: measured ${c.measured}, expected ${c.expected}`,
      skip: `the check does not apply here: ${c.notApplicable ?? 'n/a'}`,
    }[judgement];
    return { judgement, why, check };
  }
  const failed = report.checks.filter((c) => c.status === 'fail' && c.name !== RAN_TO_THE_END);
  if (failed.length) {
    return {
      judgement: 'bad',
      why: `the verdict failed: ${failed.map((c) => `${c.name} (measured ${c.measured}, expected ${c.expected})`).join('; ')}`,
    };
  }
  if (report.error || !report.passed) {
    return { judgement: 'skip', why: `the scenario stopped without a failed check: ${firstLine(report.error ?? 'no verdict')}` };
  }
  const passed = report.checks.filter((c) => c.status === 'pass').length;
  const defects = report.checks.filter((c) => c.status === 'known-defect').length;
  return {
    judgement: 'good',
    why: `the verdict passed: ${passed}/${report.checks.length} checks${defects ? `, ${defects} known defects` : ''}`,
  };
}

/** A commit whose kernel does not build (or cannot be configured for the lab): it says nothing of the behaviour. */
export function judgeBuildFailure(error: string): JudgedStep {
  return { judgement: 'skip', why: `the kernel does not build: ${buildErrorLine(error)}` };
}

/** A commit whose lab did not run at all (an error before the scenario's steps): skip, with why. */
export function judgeLabFailure(error: string): JudgedStep {
  return { judgement: 'skip', why: `the lab did not run: ${firstLine(error)}` };
}

const firstLine = (text: string) => text.trim().split('\n')[0]!.slice(0, 300);

/** The compiler's first error line from a build failure's text (make.ts shows them after "make exited with"), else its first line. */
export function buildErrorLine(text: string): string {
  const compiler = text
    .split('\n')
    .map((l) => l.trim())
    .find((l) => /\berror\b/i.test(l) && /:\d+(:\d+)?:/.test(l));
  return (compiler ?? firstLine(text)).slice(0, 300);
}
