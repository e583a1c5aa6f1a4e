import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type RunOptions, runScenario } from './runner.js';
import type { ScenarioReport } from './scenario.js';
import type { ScenarioDefinition } from './scenario.js';
import type { Progress } from '../util/progress.js';
import { bigintSafe } from '../util/json.js';
import { InputError, describeError } from '../util/errors.js';

export interface SuiteEntry {
  label: string;
  def: ScenarioDefinition;
  options: Record<string, string | number | boolean>;
  profile?: string;
  /** Never runs beside another lab (its verdicts read system-wide host counters). */
  exclusiveHost: boolean;
  /** The guest kernel and host QEMU under test, when not the profile's (a matrix). */
  kernel?: string;
  qemu?: string;
}

export function parseShard(text: string): { index: number; count: number } {
  const m = /^(\d+)\/(\d+)$/.exec(text);
  const index = m ? Number(m[1]) : NaN;
  const count = m ? Number(m[2]) : NaN;
  if (!m || count < 1 || index < 1 || index > count) throw new InputError('--shard', text, 'must be i/n with 1 ≤ i ≤ n, e.g. 2/4');
  return { index, count };
}

/** Entries of shard i of n: a stable round-robin over the sorted labels, so every entry is in exactly one shard. */
export function shardEntries<T extends { label: string }>(entries: T[], shard: { index: number; count: number }): T[] {
  return [...entries].sort((a, b) => a.label.localeCompare(b.label)).filter((_, k) => k % shard.count === shard.index - 1);
}

/** Prefixes every line of a lab's progress with its label, so parallel labs stay readable. */
export function prefixed(progress: Progress, label: string): Progress {
  return {
    step: (l, fn) => progress.step(`[${label}] ${l}`, fn),
    info: (line) =>
      progress.info(
        line
          .split('\n')
          .map((x) => `[${label}] ${x}`)
          .join('\n'),
      ),
  };
}

export interface SuiteResult {
  reports: ScenarioReport[];
  passed: boolean;
  durationMs: number;
  jobs: number;
}

/**
 * Runs entries with up to `jobs` labs at once, each in its own runtime and
 * results dir; an exclusive entry waits for the others to finish and runs
 * alone. Writes summary.json beside the per-run dirs; the caller writes the suite's report (junit.xml) from the
 * reports returned, since reports sit above scenarios.
 */
export async function runSuite(
  entries: SuiteEntry[],
  opts: {
    jobs: number;
    resultsDir: string;
    progress: Progress;
    runtimeRoot?: string;
    signal?: AbortSignal;
    /** Which shard of which whole this suite is (`--shard i/n`), recorded so shards can be merged and counted. */
    shard?: { index: number; count: number };
    /** Writes each run's report files (the runner's writeResults). */
    writeResults?: RunOptions['writeResults'];
  },
): Promise<SuiteResult> {
  const t0 = Date.now();
  await mkdir(opts.resultsDir, { recursive: true });
  const reports: ScenarioReport[] = [];
  const queue = [...entries];
  let running = 0;
  let exclusiveRunning = false;
  await new Promise<void>((resolveAll) => {
    const pump = () => {
      // An interrupted suite starts nothing new; the runs under way wind down and report.
      if (opts.signal?.aborted) queue.length = 0;
      if (queue.length === 0 && running === 0) return resolveAll();
      while (queue.length > 0 && !exclusiveRunning && running < opts.jobs) {
        const next = queue[0]!;
        if (next.exclusiveHost && running > 0) break;
        queue.shift();
        running++;
        if (next.exclusiveHost) exclusiveRunning = true;
        const progress = opts.jobs > 1 ? prefixed(opts.progress, next.label) : opts.progress;
        runScenario(next.def, {
          profile: next.profile,
          options: next.options,
          resultsDir: join(opts.resultsDir, next.label),
          progress,
          runtimeRoot: opts.runtimeRoot,
          signal: opts.signal,
          kernel: next.kernel,
          qemu: next.qemu,
          writeResults: opts.writeResults,
        })
          .catch(
            (err): ScenarioReport => ({
              scenario: next.label,
              profile: next.profile ?? next.def.defaultProfile,
              options: next.options,
              passed: false,
              startedAt: new Date().toISOString(),
              durationMs: 0,
              checks: [{ name: 'lab started', pass: false, status: 'fail', expected: 'started', measured: describeError(err), atMs: 0 }],
              phases: [],
              releases: [],
              timings: [],
              samples: [],
              sampling: { hostRateHz: 0, guestRateHz: 0, hostOverruns: 0, gaps: 0 },
              error: describeError(err),
              resultsDir: join(opts.resultsDir, next.label),
            }),
          )
          .then((r) => {
            r.scenario = next.label;
            reports.push(r);
            opts.progress.info(`${r.passed ? 'PASS' : 'FAIL'} ${next.label} (${(r.durationMs / 1000).toFixed(1)} s)`);
          })
          .finally(() => {
            running--;
            if (next.exclusiveHost) exclusiveRunning = false;
            pump();
          });
      }
    };
    pump();
  });
  const order = new Map(entries.map((e, i) => [e.label, i]));
  reports.sort((a, b) => (order.get(a.scenario) ?? 0) - (order.get(b.scenario) ?? 0));
  const result = {
    reports,
    passed: reports.length === entries.length && reports.every((r) => r.passed),
    durationMs: Date.now() - t0,
    jobs: opts.jobs,
  };
  await writeFile(
    join(opts.resultsDir, 'summary.json'),
    `${JSON.stringify(
      {
        passed: result.passed,
        durationMs: result.durationMs,
        jobs: opts.jobs,
        ...(opts.shard ? { shard: opts.shard } : {}),
        // What this suite was to run: a merge tells a run that never reported from one that was never planned.
        planned: entries.map((e) => e.label),
        runs: reports.map((r) => ({
          label: r.scenario,
          passed: r.passed,
          durationMs: r.durationMs,
          checks: r.checks.length,
          failed: r.checks.filter((c) => c.status === 'fail').length,
          knownDefects: r.checks.filter((c) => c.status === 'known-defect').length,
          resultsDir: r.resultsDir,
          error: r.error,
        })),
      },
      bigintSafe,
      2,
    )}\n`,
  );
  return result;
}
