import { PeerCommandError } from '../protocol/errors.js';
import type { Progress } from '../util/progress.js';

/** One verdict of a scenario, with what was expected and what was measured. */
export interface Check {
  name: string;
  pass: boolean;
  /**
   * pass / fail, or known-defect: a failure that matches a documented defect
   * of the code under test. It is reported, but does not fail the verdict;
   * when the defect is fixed the check passes and the report says so.
   */
  status: 'pass' | 'fail' | 'known-defect' | 'not-applicable';
  knownDefect?: string;
  /** Why the check cannot apply to this kernel or lab (status not-applicable). */
  notApplicable?: string;
  expected: string;
  measured: string;
  detail?: string;
  atMs: number;
}

const jsonish = (v: unknown): string =>
  typeof v === 'bigint'
    ? `0x${v.toString(16)}`
    : typeof v === 'string'
      ? v
      : JSON.stringify(v, (_k, x) => (typeof x === 'bigint' ? `0x${x.toString(16)}` : x));

/** Collects checks; every check is printed as it is decided. A failed check does not stop the scenario. */
export class CheckRecorder {
  readonly checks: Check[] = [];
  private readonly t0 = Date.now();
  /** Failures a step provokes on purpose, by the check's name: reported as the documented defect they are. */
  private readonly provoked: Array<{ check: RegExp; knownDefect: string }> = [];

  constructor(
    private readonly progress: Progress,
    private readonly onRecord?: (c: Check) => void,
  ) {}

  /** A later check whose name matches and that fails is the named defect's doing (a hostile call that provokes it). */
  expectFailure(check: RegExp, knownDefect: string): void {
    this.provoked.push({ check, knownDefect });
  }

  record(name: string, pass: boolean, expected: unknown, measured: unknown, detail?: string, knownDefectIn?: string): boolean {
    const knownDefect = knownDefectIn ?? (pass ? undefined : this.provoked.find((p) => p.check.test(name))?.knownDefect);
    const status = pass ? 'pass' : knownDefect ? 'known-defect' : 'fail';
    const c: Check = {
      name,
      pass,
      status,
      knownDefect,
      expected: jsonish(expected),
      measured: jsonish(measured),
      detail,
      atMs: Date.now() - this.t0,
    };
    this.checks.push(c);
    this.onRecord?.(c);
    const label = { pass: 'PASS', fail: 'FAIL', 'known-defect': 'KNOWN-DEFECT', 'not-applicable': 'N/A' }[status];
    this.progress.info(
      `  ${label} ${name}: measured ${c.measured}${pass ? '' : `, expected ${c.expected}`}${detail ? ` (${detail})` : ''}` +
        (status === 'known-defect'
          ? `\n      known defect: ${knownDefect}`
          : pass && knownDefect
            ? '\n      (a documented defect no longer reproduces here)'
            : ''),
    );
    return pass;
  }

  /** A check that cannot apply here (the kernel's page size, a missing feature): reported with why, never a failure. */
  notApplicable(name: string, why: string): void {
    const c: Check = {
      name,
      pass: true,
      status: 'not-applicable',
      notApplicable: why,
      expected: 'n/a',
      measured: 'n/a',
      atMs: Date.now() - this.t0,
    };
    this.checks.push(c);
    this.onRecord?.(c);
    this.progress.info(`  N/A ${name}: ${why}`);
  }

  equal<T>(name: string, measured: T, expected: T, detail?: string): boolean {
    return this.record(name, jsonish(measured) === jsonish(expected), expected, measured, detail);
  }

  atLeast(name: string, measured: number, min: number, detail?: string): boolean {
    return this.record(name, measured >= min, `>= ${min}`, measured, detail);
  }

  /**
   * The promise must fail with this errno (or QMP/agent error class). knownDefect: the documented defect a failure of
   * this check shows, or a function that tells from the answer ("success", "error EINVAL") which one, if any (and,
   * when none, why: its detail).
   */
  async failsWith(
    name: string,
    op: Promise<unknown>,
    errorClass: string,
    knownDefect?: string | ((answer: string) => { knownDefect?: string; detail?: string }),
  ): Promise<boolean> {
    const explain = (answer: string) => (typeof knownDefect === 'function' ? knownDefect(answer) : { knownDefect });
    const joined = (...parts: Array<string | undefined>) => parts.filter(Boolean).join('; ') || undefined;
    try {
      const v = await op;
      const why = explain('success');
      return this.record(name, false, `error ${errorClass}`, `success ${jsonish(v)}`, why.detail, why.knownDefect);
    } catch (err) {
      const got = err instanceof PeerCommandError ? err.errorClass : (err as Error).message;
      const why = explain(`error ${got}`);
      return this.record(
        name,
        got === errorClass,
        `error ${errorClass}`,
        `error ${got}`,
        joined(err instanceof PeerCommandError ? err.desc : undefined, why.detail),
        why.knownDefect,
      );
    }
  }

  /** The promise must succeed. */
  async succeeds<T>(name: string, op: Promise<T>, describe?: (v: T) => string): Promise<T | undefined> {
    try {
      const v = await op;
      this.record(name, true, 'success', describe ? describe(v) : 'success');
      return v;
    } catch (err) {
      this.record(name, false, 'success', err instanceof PeerCommandError ? `error ${err.errorClass}` : 'error', (err as Error).message);
      return undefined;
    }
  }

  get passed(): boolean {
    return this.checks.length > 0 && this.checks.every((c) => c.status !== 'fail');
  }
}
