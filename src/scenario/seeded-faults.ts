import { InputError } from '../util/errors.js';
import { Validator, type Spec } from '../util/validate.js';
import type { ScenarioDefinition } from './scenario.js';

/** `seedFaults`: every scenario that can seed faults takes it. */
export const SEED_FAULTS_OPTION: Spec = {
  type: 'string',
  pattern: /^[a-z0-9-]+(,[a-z0-9-]+)*$/,
  patternHint: 'fault names separated by commas',
};

/**
 * Checks a run's options against the scenario's optionSpecs: an unknown
 * option or a bad value is an InputError naming it (exit 2), before a lab
 * starts. `where` names how the options were given (`--set`, `steps[2].options`).
 * Returns the seeded faults the options name.
 */
export function validateScenarioOptions(def: ScenarioDefinition, options: Record<string, unknown>, where = '--set'): Set<string> {
  const specs: Record<string, Spec> = { ...(def.optionSpecs ?? {}), ...(def.seedableFaults ? { seedFaults: SEED_FAULTS_OPTION } : {}) };
  const v = new Validator(`scenario ${def.name}`);
  for (const [key, value] of Object.entries(options)) {
    const spec = specs[key];
    if (!spec) {
      const known = Object.keys(specs);
      throw new InputError(
        `scenario ${def.name}`,
        `${where} ${key}`,
        'is not an option of this scenario',
        known.length ? `its options: ${known.join(', ')}` : 'this scenario takes no options',
      );
    }
    v.check(value, spec, `${where} ${key}`);
  }
  return parseSeedFaults(def, options);
}

/**
 * Seeded faults prove that a verdict can fail: each one changes what a run
 * does (never what it measures or expects), so the real kernel's answer
 * disagrees with the expectation and named checks fail. A scenario lists the
 * faults it can seed (name → what changes); `--set seedFaults=a,b` seeds them;
 * test/faults.test.ts runs each and asserts exactly which checks flip.
 */
export function parseSeedFaults(def: ScenarioDefinition, options: Record<string, unknown>): Set<string> {
  const raw = options.seedFaults;
  if (raw === undefined || raw === '') return new Set();
  const known = Object.keys(def.seedableFaults ?? {});
  const names = String(raw)
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  for (const n of names) {
    if (!known.includes(n)) {
      throw new InputError(
        `scenario ${def.name}`,
        'seedFaults',
        `has no seedable fault "${n}"`,
        known.length ? `seedable faults: ${known.join(', ')}` : 'this scenario seeds no faults',
      );
    }
  }
  return new Set(names);
}
