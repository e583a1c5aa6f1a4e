import { describe, expect, it } from 'vitest';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { packageRoot } from '../../src/util/paths.js';

const pages = ['README.md', ...readdirSync(join(packageRoot, 'docs')).map((f) => join('docs', f))].filter((f) => f.endsWith('.md'));

/** A heading's anchor as GitHub makes it: lower case, punctuation dropped, spaces as hyphens. */
const slug = (heading: string) =>
  heading
    .toLowerCase()
    .replace(/[^\p{L}\p{N} _-]/gu, '')
    .replace(/ /g, '-');

const anchorsOf = (text: string) => new Set([...text.matchAll(/^#{1,6} (.+)$/gm)].map((m) => slug(m[1]!.trim())));

/** Every [text](target) outside code: relative targets only (the docs link nothing outside the repository). */
function linksOf(text: string): string[] {
  const prose = text.replace(/```[\s\S]*?```/g, '').replace(/`[^`\n]*`/g, '');
  return [...prose.matchAll(/\[[^\]]*\]\(([^)\s]+)\)/g)].map((m) => m[1]!);
}

describe('the README and docs/', () => {
  it('link nothing that is not there (files and headings)', () => {
    const dead: string[] = [];
    for (const page of pages) {
      const text = readFileSync(join(packageRoot, page), 'utf8');
      for (const link of linksOf(text)) {
        if (/^[a-z]+:/.test(link)) {
          dead.push(`${page}: ${link} (an outside address: the docs link only the repository)`);
          continue;
        }
        const [path, anchor] = link.split('#') as [string, string | undefined];
        const target = path ? resolve(dirname(join(packageRoot, page)), path) : join(packageRoot, page);
        if (!existsSync(target)) {
          dead.push(`${page}: ${link} (no ${relative(packageRoot, target)})`);
          continue;
        }
        if (anchor && target.endsWith('.md') && !anchorsOf(readFileSync(target, 'utf8')).has(anchor))
          dead.push(`${page}: ${link} (no heading #${anchor})`);
      }
    }
    expect(dead).toEqual([]);
  });

  it('a README a newcomer reads in two minutes, linking every page of docs/', () => {
    const readme = readFileSync(join(packageRoot, 'README.md'), 'utf8');
    expect(readme.split('\n').length).toBeLessThan(200);
    const linked = new Set(linksOf(readme).map((l) => l.split('#')[0]));
    expect(pages.filter((p) => p !== 'README.md' && !linked.has(p))).toEqual([]);
  });
});
