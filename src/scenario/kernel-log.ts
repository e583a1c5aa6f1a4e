/**
 * What a guest kernel log must not contain. One entry per kind of report:
 * a new kind is one line. Each pattern matches the report's first line; the
 * lines that follow it (up to the next blank line or `---[ end trace`) are
 * its excerpt.
 */
export const KERNEL_REPORT_KINDS: Array<{ kind: string; pattern: RegExp }> = [
  { kind: 'panic', pattern: /Kernel panic - not syncing/ },
  { kind: 'Oops', pattern: /\bOops: / },
  { kind: 'soft lockup', pattern: /BUG: soft lockup/ },
  { kind: 'hard lockup', pattern: /hard LOCKUP/ },
  { kind: 'BUG', pattern: /\bBUG: (?!soft lockup)/ },
  // WARN()'s report names the source line ("WARNING: CPU: 0 PID: 52 at mm/foo.c:276 …"); plain messages that
  // start with "WARNING:" (pseries' "WARNING: nvram corrupt" at every boot) are not reports.
  { kind: 'WARNING', pattern: /\bWARNING: (?:CPU: \d+ PID: \d+ at |at )?\S+\.[ch]:\d+/ },
  { kind: 'RCU stall', pattern: /rcu: INFO: \S+ (?:self-)?detected stalls?|rcu_\w+ (?:self-)?detected stall/ },
  { kind: 'hung task', pattern: /INFO: task \S+ blocked for more than \d+ seconds/ },
];

export const KERNEL_REPORT_NAMES = KERNEL_REPORT_KINDS.map((k) => k.kind);

/** One report found in a kernel log: its kind, its first line and the lines after it. */
export interface KernelReport {
  kind: string;
  line: string;
  excerpt: string[];
}

/**
 * printk's "[   12.345678] " prefix and whatever precedes it on a console line (the console shell's prompt, a
 * terminal query: "~ # \x1b[6n[    5.73] WARNING: …"), so the same line read from the console and from dmesg is one
 * report that starts where the kernel's message does.
 */
const stamp = /^.*?\[\s*\d+\.\d+\]\s?/;

export function scanKernelLog(text: string, excerptLines = 8): KernelReport[] {
  const lines = text.split(/\r?\n/);
  const out: KernelReport[] = [];
  const seen = new Set<string>();
  for (const [i, raw] of lines.entries()) {
    const kind = KERNEL_REPORT_KINDS.find((k) => k.pattern.test(raw))?.kind;
    if (!kind) continue;
    const line = raw.replace(stamp, '').trim();
    if (seen.has(line)) continue;
    seen.add(line);
    const excerpt: string[] = [];
    for (const next of lines.slice(i + 1, i + 1 + excerptLines)) {
      const l = next.replace(stamp, '').trimEnd();
      if (!l.trim() || KERNEL_REPORT_KINDS.some((k) => k.pattern.test(next))) break;
      excerpt.push(l);
      if (/---\[ end trace/.test(l)) break;
    }
    out.push({ kind, line, excerpt });
  }
  return out;
}

/** A kernel report a scenario expects because it reproduces a documented defect. */
export interface ExpectedKernelReport {
  pattern: RegExp;
  knownDefect: string;
}

/** The first lines of each report, for a check's detail. */
export function describeReports(reports: KernelReport[], max = 3): string {
  const shown = reports
    .slice(0, max)
    .map((r) => `${r.kind}: ${r.line}${r.excerpt.length ? ` | ${r.excerpt.slice(0, 3).join(' | ')}` : ''}`);
  return `${shown.join(' || ')}${reports.length > max ? ` (+${reports.length - max} more)` : ''}`;
}

/**
 * The verdict on a kernel log: pass when nothing was reported; known-defect
 * when every report matches one a scenario declared for a documented defect.
 */
export function judgeKernelLog(
  reports: KernelReport[],
  expected: ExpectedKernelReport[],
): { pass: boolean; measured: string; knownDefect?: string } {
  if (!reports.length) return { pass: true, measured: 'none' };
  const explainedBy = (r: KernelReport) => expected.find((e) => e.pattern.test(`${r.line}\n${r.excerpt.join('\n')}`));
  const all = reports.every((r) => explainedBy(r));
  const defects = [...new Set(reports.map((r) => explainedBy(r)?.knownDefect).filter(Boolean))];
  return { pass: false, measured: describeReports(reports), knownDefect: all ? defects.join('; ') : undefined };
}
