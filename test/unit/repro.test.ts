import { describe, expect, it } from 'vitest';
import { readdirSync } from 'node:fs';
import { defectPatches, patchesForDefect } from '../../src/kernel/defect-patches.js';
import { exportBundle } from '../../src/repro/bundle.js';
import { recipeFor, RECIPES } from '../../src/repro/recipes.js';
import { formatStepsFile, stepChecks } from '../../src/repro/steps-file.js';
import { silentProgress } from '../../src/util/progress.js';
import { InputError } from '../../src/util/errors.js';
import { scratchDir } from '../helpers/scratch.js';

describe('repro export: bad input is refused, naming it, before anything is built', () => {
  it('a dir without results.json, an unknown check, --scenario without --check', async () => {
    const empty = scratchDir('res');
    await expect(exportBundle({ resultsDir: empty, progress: silentProgress })).rejects.toThrow(/RESULTS: .* holds no results\.json/);
    await expect(exportBundle({ scenario: 'prereg-accounting', check: 'no such check', progress: silentProgress })).rejects.toSatisfy(
      (e) => e instanceof InputError && e.field === '--check' && /"unregistering a region while it is mapped"/.test(e.hint ?? ''),
    );
    await expect(exportBundle({ scenario: 'prereg-accounting', progress: silentProgress })).rejects.toThrow(
      /--check: is needed with --scenario/,
    );
    await expect(exportBundle({ scenario: 'nope', check: 'x', progress: silentProgress })).rejects.toThrow(
      /--scenario: there is no scenario nope/,
    );
  });
});

describe('recipes', () => {
  it('each names the checks it reproduces, and its steps are one JSON object per line with the same check names', () => {
    for (const r of RECIPES) {
      expect(recipeFor(r.scenario, r.checks[0]!)).toBe(r);
      const steps = r.steps({ sizeMiB: 8 });
      const text = formatStepsFile(['header'], steps);
      const lines = text
        .trim()
        .split('\n')
        .filter((l) => !l.startsWith('#'));
      expect(lines.map((l) => JSON.parse(l))).toEqual(steps);
      // The bundle's checks that the lab also has are named as the lab names them.
      const shared = stepChecks(steps).filter((c) => r.checks.includes(c));
      expect(shared.length).toBeGreaterThan(0);
      // The device is a parameter, never an assumption.
      expect(text).toContain('"$device"');
      expect(text).not.toMatch(/\d{4}:\d{2}:\d{2}\.\d/);
    }
  });
});

describe('a known defect’s bundle carries its fix', () => {
  it('the README names a patch for each recipe’s defect, on 6.12.107, 6.12.117 and 7.2.11, and the bundle copies them', async () => {
    const all = defectPatches();
    for (const r of RECIPES.filter((x) => x.defect !== undefined)) {
      const fixes = patchesForDefect(r.defect!, all);
      expect(fixes.map((p) => p.base).sort(), r.id).toEqual(['6.12.107', '6.12.117', '7.2.11']);
    }
    // Defect 4's fix is upstream's, backported to 6.12.107 only; defect 6 takes two patches on each base.
    expect(patchesForDefect(4, all).map((p) => `${p.base}/${p.file.slice(0, 4)}`)).toEqual(['6.12.107/0003']);
    expect(patchesForDefect(6, all)).toHaveLength(6);
    const out = scratchDir('bundle');
    const bundle = await exportBundle({
      scenario: 'prereg-accounting',
      check: 'unregistering a region while it is mapped',
      out: `${out}/b`,
      progress: silentProgress,
    });
    expect(readdirSync(`${bundle.dir}/patches/6.12.107`)).toEqual(['0001-vfio-spapr_tce-Keep-a-mapped-region-registered-on-UN.patch']);
    expect(bundle.report).toMatch(/^Fix\n[\s\S]*patches\/7\.2\.11\/0001-vfio-spapr_tce-Keep-a-mapped-region-registered-on-UN\.patch$/m);
  });
});
