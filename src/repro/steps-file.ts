/**
 * The steps file `tcelab-agent run` reads (guest/agent/standalone.c): one JSON
 * object per line, the agent's own commands, so a bundle does in the guest
 * what the lab did. This module only writes them; the agent is their reader.
 */

/** What a checked step must show: an errno, success, or a value compared with an expression. */
export type StepExpectation =
  | { error: string }
  | { ok: true }
  | { value: string; equals?: string | number; atLeast?: string | number; atMost?: string | number };

export interface ReproStep {
  /** Printed as a KTAP diagnostic. */
  note?: string;
  sleepMs?: number;
  /** An agent command (bind, worker, counters…) or the runner's own (kernel-log, khugepaged-pass). */
  execute?: string;
  arguments?: Record<string, unknown>;
  /** Reply values kept as $name for later steps: name → dotted path in the reply. */
  save?: Record<string, string>;
  /** Makes the step a verdict, under the same name as the lab's check. */
  check?: string;
  expect?: StepExpectation;
  /** Repeats the command until the expectation holds or this many ms pass. */
  waitMs?: number;
  /**
   * …or until two replies in a row that ran an RCU barrier (counters with rcuBarrier) observe the same: a release
   * set in motion has landed by then, so one that has not will not come.
   */
  atRest?: boolean;
  knownDefect?: string;
}

/** A worker operation as a step (the agent's "worker" command forwards it). */
export function workerStep(op: string, args: Record<string, unknown>, more: Omit<ReproStep, 'execute' | 'arguments'> = {}): ReproStep {
  return { execute: 'worker', arguments: { worker: '$worker', op, args }, ...more };
}

/** The file's text: a header of # comments, then one step per line. */
export function formatStepsFile(header: string[], steps: ReproStep[]): string {
  return `${header.map((l) => `# ${l}`).join('\n')}\n${steps.map((s) => JSON.stringify(s)).join('\n')}\n`;
}

/** Names of the checks a steps file makes, in order. */
export function stepChecks(steps: ReproStep[]): string[] {
  return steps.flatMap((s) => (s.check ? [s.check] : []));
}
