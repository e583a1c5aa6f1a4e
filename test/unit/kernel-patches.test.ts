import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { packageRoot } from '../../src/util/paths.js';

/** kernel-patches/: one folder per base tree, `git format-patch` files in it, a README listing them. */
const root = join(packageRoot, 'kernel-patches');
const bases = readdirSync(root, { withFileTypes: true })
  .filter((d) => d.isDirectory())
  .map((d) => d.name);
const patchesOf = (base: string) =>
  readdirSync(join(root, base))
    .filter((f) => f.endsWith('.patch'))
    .sort();
const readme = readFileSync(join(root, 'README.md'), 'utf8');

/** The README's section of a base: from its "## <base>" heading to the next heading of that level. */
const sectionOf = (base: string) => readme.split(/^## /m).find((s) => s.startsWith(`${base} `) || s.startsWith(`${base}\n`)) ?? '';

/**
 * What is wrong with one hunk: its header's line counts against the lines it has (a hand-edited patch often breaks
 * them, and `git apply` then refuses it). Context lines start with a space, removed ones with -, added ones with +.
 */
function hunkProblems(lines: string[], at: number): { problem?: string; next: number } {
  const header = /^@@ -\d+(?:,(\d+))? \+\d+(?:,(\d+))? @@/.exec(lines[at]!);
  if (!header) return { problem: `line ${at + 1}: not a hunk header: ${lines[at]}`, next: at + 1 };
  let old = Number(header[1] ?? 1);
  let neu = Number(header[2] ?? 1);
  let i = at + 1;
  while (old > 0 || neu > 0) {
    const line = lines[i];
    if (line === undefined) return { problem: `hunk at line ${at + 1} ends early`, next: i };
    if (line.startsWith('\\')) {
      i++;
      continue;
    }
    const kind = line[0];
    if (kind === ' ' || line === '') {
      old--;
      neu--;
    } else if (kind === '-') old--;
    else if (kind === '+') neu--;
    else return { problem: `hunk at line ${at + 1}: line ${i + 1} is not context, - or +: ${line}`, next: i };
    i++;
  }
  if (old < 0 || neu < 0) return { problem: `hunk at line ${at + 1}: more lines than its header counts`, next: i };
  return { next: i };
}

/** What is wrong with a `git format-patch` file: its header, its message's trailers, its diff. */
function patchProblems(text: string, number: number, count: number): string[] {
  const problems: string[] = [];
  const lines = text.split('\n');
  if (!/^From [0-9a-f]{40} Mon Sep 17 00:00:00 2001$/.test(lines[0]!)) problems.push('no "From <commit> Mon Sep 17 …" first line');
  if (!/^From: .+ <[^>\s]+@[^>\s]+>$/m.test(text)) problems.push('no "From: name <address>" line');
  if (!/^Date: .+$/m.test(text)) problems.push('no Date: line');
  const subject = /^Subject: \[PATCH(?: (\d+)\/(\d+))?\] (.+)$/m.exec(text);
  if (!subject) problems.push('no "Subject: [PATCH …] …" line');
  else if (count > 1 && (Number(subject[1]) !== number || Number(subject[2]) !== count))
    problems.push(`Subject says [PATCH ${subject[1]}/${subject[2]}], the file is ${number} of ${count}`);
  const separator = lines.indexOf('---');
  if (separator < 0) problems.push('no "---" line between the message and the diff');
  const message = lines.slice(0, separator < 0 ? lines.length : separator);
  if (!message.some((l) => /^Signed-off-by: .+ <[^>\s]+@[^>\s]+>$/.test(l))) problems.push('no Signed-off-by: in the message');
  const diffs = lines.flatMap((l, i) => (/^diff --git a\/\S+ b\/\S+$/.test(l) ? [i] : []));
  if (diffs.length === 0) problems.push('no "diff --git" in it');
  for (const start of diffs) {
    let i = start + 1;
    while (i < lines.length && !lines[i]!.startsWith('@@') && !lines[i]!.startsWith('diff --git')) i++;
    if (!lines[i]?.startsWith('@@')) {
      problems.push(`the diff at line ${start + 1} has no hunk`);
      continue;
    }
    while (lines[i]?.startsWith('@@')) {
      const { problem, next } = hunkProblems(lines, i);
      if (problem) {
        problems.push(problem);
        break;
      }
      i = next;
    }
  }
  return problems;
}

describe('kernel-patches/', () => {
  it('has a folder per base tree, each with patches', () => {
    expect(bases).toEqual(expect.arrayContaining(['6.12.107', '7.2.11']));
    for (const base of bases) expect(patchesOf(base).length, base).toBeGreaterThan(0);
  });

  it('holds only well-formed git format-patch files, numbered in order', () => {
    const problems: string[] = [];
    for (const base of bases) {
      const files = patchesOf(base);
      files.forEach((file, i) => {
        if (!file.startsWith(`${String(i + 1).padStart(4, '0')}-`)) problems.push(`${base}/${file}: not numbered ${i + 1}`);
        const text = readFileSync(join(root, base, file), 'utf8');
        for (const p of patchProblems(text, i + 1, files.length)) problems.push(`${base}/${file}: ${p}`);
      });
    }
    expect(problems).toEqual([]);
  });

  it("signs every patch as the lab's, and says which defect of docs/verdicts.md it fixes", () => {
    for (const base of bases)
      for (const file of patchesOf(base)) {
        const text = readFileSync(join(root, base, file), 'utf8');
        expect(text, `${base}/${file}`).toMatch(/^Signed-off-by: tcelab lab <tcelab@example\.invalid>$/m);
        const row = sectionOf(base)
          .split('\n')
          .find((l) => l.includes(`\`${file}\``));
        expect(row, `${base}/${file}: a row of the README's ${base} table`).toMatch(/^\| `[^`]+` \| \d \|/);
      }
  });

  it('lists in the README exactly the files there are', () => {
    for (const base of bases) {
      const listed = [...sectionOf(base).matchAll(/`(\d{4}-[^`]+\.patch)`/g)].map((m) => m[1]);
      expect(new Set(listed), base).toEqual(new Set(patchesOf(base)));
    }
  });

  it('finds what is wrong with a broken patch', () => {
    const good = readFileSync(join(root, '6.12.107', patchesOf('6.12.107')[0]!), 'utf8');
    expect(patchProblems(good, 1, patchesOf('6.12.107').length)).toEqual([]);
    expect(patchProblems(good.replace(/^Signed-off-by: .*$/gm, ''), 1, 6)).toContain('no Signed-off-by: in the message');
    expect(patchProblems(good, 2, 6)[0]).toMatch(/^Subject says \[PATCH 1\/6\], the file is 2 of 6/);
    // A hunk that lost a context line no longer adds up to its header.
    const cut = good.replace(/^ \tbool found = false;\n/m, '');
    expect(patchProblems(cut, 1, 6).join('\n')).toMatch(/hunk at line \d+/);
    expect(patchProblems(good.slice(0, good.indexOf('diff --git')), 1, 6)).toContain('no "diff --git" in it');
  });
});
