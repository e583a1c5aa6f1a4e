import { describe, expect, it } from 'vitest';
import { parseScenarioFile, listScenarioFiles, loadScenarioFile } from '../../src/scenario/data/scenario-file.js';
import { definitionFromFile } from '../../src/scenario/data/interpreter.js';
import { procedures } from '../../src/scenario/registry.js';
import { parseShard, shardEntries } from '../../src/scenario/suite.js';
import { InputError } from '../../src/util/errors.js';
import { jsonPathLines } from '../../src/util/json-lines.js';
import { withStepTable } from '../../src/scenario/data/step-docs.js';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { packageRoot } from '../../src/util/paths.js';

function fieldOf(text: string): string {
  try {
    parseScenarioFile(text, '/x/user.json');
  } catch (err) {
    expect(err).toBeInstanceOf(InputError);
    return (err as InputError).field;
  }
  throw new Error('did not throw');
}

describe('scenario files', () => {
  it('name the bad field and its line', () => {
    const text = `{
  "description": "d",
  "steps": [
    { "step": "bind", "device": "edu1", "as": "e" },
    { "step": "alloc", "worker": "w", "sizeMiB": "16", "as": "r" }
  ]
}`;
    expect(fieldOf(text)).toBe('steps[1].sizeMiB (line 5)');
    expect(fieldOf(text.replace('"alloc"', '"allocate"'))).toBe('steps[1].step (line 5)');
    expect(fieldOf(text.replace('"as": "e"', '"as": "e", "colour": 1'))).toBe('steps[0].colour (line 4)');
    expect(fieldOf(text.replace('"description": "d",', ''))).toBe('description (line 1)');
    expect(fieldOf('{"description": "d", "steps": []}')).toMatch(/^steps/);
    expect(fieldOf('{"description": "d",\n "steps": [\n {"step": "sleep", "ms": 1e12}]}')).toBe('steps[0].ms (line 3)');
    expect(fieldOf('{"description": "d", "steps": [ }')).toMatch(/^line 1, column/);
    expect(fieldOf('{"description": "d",\n "steps": [\n {"step": "inner-shutdown", "inner": "l2", "via": "sigterm"}]}')).toBe(
      'steps[0].via (line 3)',
    );
    expect(fieldOf('{"description": "d",\n "steps": [\n {"step": "adopt-fds", "worker": "w"}]}')).toBe('steps[0].inner (line 3)');
    expect(fieldOf('{"description": "d",\n "steps": [\n {"step": "foreign", "worker": "w", "how": "clone", "as": "f"}]}')).toBe(
      'steps[0].how (line 3)',
    );
    const unknownDefect = '{"step": "unmap", "worker": "w", "window": "dma32", "sizeMiB": 1, "knownDefects": ["defect-9"]}';
    expect(fieldOf(`{"description": "d",\n "steps": [\n ${unknownDefect}]}`)).toBe('steps[0].knownDefects[0] (line 3)');
    // An ioctl's positive return is an answer a step may expect (the worker's class ERETURN+<n>); other suffixes are not.
    const unmap = (expectError: string) =>
      `{"description": "d", "steps": [{"step": "unmap", "worker": "w", "window": "dma32", "sizeMiB": 1, "expectError": "${expectError}"}]}`;
    expect(parseScenarioFile(unmap('ERETURN+1'), '/x/y.json').steps[0]).toMatchObject({ expectError: 'ERETURN+1' });
    expect(fieldOf(unmap('EBUSY+1'))).toBe('steps[0].expectError (line 1)');
  });

  it('maps JSON paths to lines', () => {
    const lines = jsonPathLines('{\n "a": [\n  1,\n  {"b": "x\\"y"}\n ]\n}');
    expect(lines.get('a')).toBe(2);
    expect(lines.get('a[0]')).toBe(3);
    expect(lines.get('a[1].b')).toBe(4);
  });

  it('every shipped scenario parses and names known procedures', async () => {
    const names = await listScenarioFiles();
    expect(names).toEqual(
      expect.arrayContaining([
        'prereg-accounting',
        'ddw-windows',
        'guest-release',
        'shutdown-release',
        'ddw-hotplug',
        'window-map-release',
        'nested-prereg-release',
        'nested-steps',
        'hostile-process',
      ]),
    );
    for (const n of names) definitionFromFile(await loadScenarioFile(n), procedures);
    const bad = parseScenarioFile('{"description": "d", "steps": [{"step": "do", "procedure": "nope"}]}', '/x/y.json');
    expect(() => definitionFromFile(bad, procedures)).toThrow(/unknown procedure "nope"/);
  });

  it('shards cover every run exactly once', () => {
    const entries = Array.from({ length: 7 }, (_, i) => ({ label: `s${i}` }));
    const shards = [1, 2, 3].map((i) => shardEntries(entries, { index: i, count: 3 }).map((e) => e.label));
    expect(shards.flat().sort()).toEqual(entries.map((e) => e.label).sort());
    expect(new Set(shards.flat()).size).toBe(7);
    expect(() => parseShard('0/3')).toThrow(InputError);
    expect(() => parseShard('4/3')).toThrow(InputError);
    expect(parseShard('2/3')).toEqual({ index: 2, count: 3 });
  });
});

describe('docs/scenarios.md lists the steps of the step table', () => {
  it('is current (npm run docs rewrites it)', () => {
    const page = readFileSync(join(packageRoot, 'docs', 'scenarios.md'), 'utf8');
    expect(page).toBe(withStepTable(page));
  });
});
