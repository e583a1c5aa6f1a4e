import type { BisectResult, BisectStep } from './bisect-result.js';

/** Seconds for a person: "4.8 s", "21 s", "3 min 05 s". */
export function formatSeconds(ms: number): string {
  const s = ms / 1000;
  if (s < 10) return `${s.toFixed(1)} s`;
  if (s < 60) return `${Math.round(s)} s`;
  const whole = Math.round(s);
  return `${Math.floor(whole / 60)} min ${String(whole % 60).padStart(2, '0')} s`;
}

const short = (commit: string) => commit.slice(0, 12);

const TESTED = { good: 'good', bad: 'bad', skip: 'skipped' } as const;

/** The answer in one line: the first bad commit, or the commits it is among. */
export function bisectOutcomeLine(r: BisectResult): string {
  switch (r.outcome) {
    case 'first-bad':
      return `first bad commit: ${r.firstBad!.commit} ${r.firstBad!.subject}`;
    case 'only-skipped':
      return (
        `no single first bad commit: only skipped commits are left, the first bad one is among ` +
        r.candidates!.map((c) => `${short(c.commit)} ${c.subject}${c.judgement ? ` (${TESTED[c.judgement]})` : ''}`).join('; ')
      );
    case 'interrupted':
      return `interrupted after ${r.steps.length} steps: no answer yet`;
    case 'error':
      return `stopped by an error after ${r.steps.length} steps: ${r.error ?? 'unknown'}`;
  }
}

/** Time spent building kernels and running labs over all steps. */
export function bisectTotals(r: BisectResult): { buildMs: number; labMs: number; compiled: number } {
  return {
    buildMs: r.steps.reduce((t, s) => t + (s.build?.ms ?? 0), 0),
    labMs: r.steps.reduce((t, s) => t + (s.lab?.ms ?? 0), 0),
    compiled: r.steps.reduce((t, s) => t + (s.build?.compiled ?? 0), 0),
  };
}

/** A table cell: no pipe or newline breaks the row. */
const cell = (text: string) => text.replace(/\|/g, '\\|').replace(/\s*\n\s*/g, ' ');

/** bisect.md: the answer, the inputs, and a row per step with what was built, measured and judged, and why. */
export function bisectPage(r: BisectResult): string {
  const totals = bisectTotals(r);
  const rows = r.steps.map((s) =>
    [
      String(s.step),
      `\`${short(s.commit)}\``,
      cell(s.subject),
      s.build ? `${formatSeconds(s.build.ms)}, ${s.build.compiled} compiled` : 'does not build',
      s.lab ? formatSeconds(s.lab.ms) : s.labError ? 'did not run' : '—',
      s.check ? cell(`${s.check.status}: ${s.check.measured}`) : '—',
      `**${s.judgement}**`,
      cell(s.why),
    ].join(' | '),
  );
  return (
    `# tcelab bisect: ${r.scenario}\n\n` +
    `**${cell(bisectOutcomeLine(r))}**\n\n` +
    `- judged by: ${r.check ? `the check "${r.check}"` : 'the whole verdict'} (profile ${r.profile})\n` +
    `- tree: ${r.tree}\n` +
    `- good: ${r.good.ref} = \`${short(r.good.commit)}\` ${cell(r.good.subject)}\n` +
    `- bad: ${r.bad.ref} = \`${short(r.bad.commit)}\` ${cell(r.bad.subject)}\n` +
    (r.kconfig.length ? `- kconfig additions: ${r.kconfig.join(', ')}\n` : '') +
    `- ${r.steps.length} steps in ${formatSeconds(r.durationMs)} (builds ${formatSeconds(totals.buildMs)}, ` +
    `${totals.compiled} objects compiled; labs ${formatSeconds(totals.labMs)}), started ${r.startedAt}\n\n` +
    `| step | commit | subject | build | lab | check | judgement | why |\n|---|---|---|---|---|---|---|---|\n` +
    rows.map((row) => `| ${row} |\n`).join('') +
    `\nEach step's run is in step-<n>-<commit>/ (results.json, junit.xml, timeline.svg). git's log of the bisection ` +
    `(\`git bisect replay\` takes it):\n\n\`\`\`\n${r.gitLog.trim()}\n\`\`\`\n`
  );
}

/** The step's one line of progress: "step 3/~4: 1a2b3c4d5e6f subject: build 21 s (12 compiled), lab 40 s, check error EBUSY: good". */
export function stepLine(s: BisectStep, estimatedTotal: number): string {
  const build = s.build ? `build ${formatSeconds(s.build.ms)} (${s.build.compiled} compiled)` : 'does not build';
  const lab = s.lab ? `, lab ${formatSeconds(s.lab.ms)}` : s.labError ? ', lab failed' : '';
  const measured = s.check ? `, check ${s.check.measured}` : '';
  return `step ${s.step}/~${estimatedTotal}: ${s.commit.slice(0, 12)} ${s.subject}: ${build}${lab}${measured}: ${s.judgement} (${s.why})`;
}
