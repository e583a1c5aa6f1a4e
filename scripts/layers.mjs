// The folders of src/ are layers: a module may import from its own folder or a lower one, never a higher one, so that
// the lower rooms stay usable (and testable) without the higher ones and no cycle can run through two folders.
// Biome's noImportCycles catches a cycle once it closes; this catches the first import that points the wrong way.
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';

/** Lowest first. A folder not created yet may stay here; a folder of src/ missing from here is an error. */
const layers = [
  'util',
  'protocol',
  'qmp',
  'agent',
  'host',
  'probes',
  'debian',
  'kernel',
  'kbuild',
  'image',
  'qemu',
  'snapshot',
  'lab',
  'ddw',
  'hotplug',
  'doctor',
  'live',
  'scenario',
  'fuzz',
  'matrix',
  'bisect',
  'report',
  'repro',
  'control',
  'bench',
  'cli',
];
const rank = new Map(layers.map((folder, i) => [folder, i]));

/** The relative module paths a file names: static imports and re-exports (types too), bare imports, import(). */
const importPatterns = [
  /^\s*(?:import|export)\b[^;]*?\bfrom\s*['"](\.[^'"]*)['"]/gm,
  /^\s*import\s*['"](\.[^'"]*)['"]/gm,
  /\bimport\(\s*['"](\.[^'"]*)['"]\s*\)/g,
];

const root = resolve(dirname(new URL(import.meta.url).pathname), '..');
const src = join(root, 'src');

/** Every .ts file under dir, recursively. */
const tsFilesUnder = (dir) =>
  readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? tsFilesUnder(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : [],
  );

/** The folder of src/ a path lies in (its first segment), or undefined for a path outside src/'s folders. */
const folderOf = (path) => {
  const parts = relative(src, path).split(sep);
  return parts.length > 1 && parts[0] !== '..' ? parts[0] : undefined;
};

const show = (path) => relative(root, path);
const folders = readdirSync(src, { withFileTypes: true })
  .filter((e) => e.isDirectory())
  .map((e) => e.name)
  .sort();
const problems = folders.filter((f) => !rank.has(f)).map((f) => `not in the table: src/${f}/ (add it to scripts/layers.mjs at its layer)`);
const files = tsFilesUnder(src).sort();
let crossFolder = 0;
let upward = 0;
for (const file of files) {
  const from = folderOf(file);
  const text = readFileSync(file, 'utf8');
  const specifiers = new Set(importPatterns.flatMap((p) => [...text.matchAll(p)].map((m) => m[1])));
  for (const specifier of specifiers) {
    const target = resolve(dirname(file), specifier).replace(/\.js$/, '.ts');
    const to = folderOf(target);
    if (!from || !to || from === to) continue;
    crossFolder++;
    // A folder missing from the table is reported once above, not at each of its imports.
    if (!rank.has(from) || !rank.has(to) || rank.get(to) < rank.get(from)) continue;
    upward++;
    problems.push(`upward: ${show(file)} → ${show(target)} (${from} is below ${to})`);
  }
}
for (const p of problems) process.stderr.write(`${p}\n`);
process.stdout.write(`layers: ${folders.length} folders, ${files.length} files, ${crossFolder} cross-folder imports, ${upward} upward\n`);
process.exit(problems.length ? 1 : 0);
