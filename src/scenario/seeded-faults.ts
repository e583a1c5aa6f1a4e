import { InputError } from '../util/errors.js';
import type { ScenarioDefinition } from './scenario.js';

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
  const names = String(raw).split(',').map((s) => s.trim()).filter(Boolean);
  for (const n of names) {
    if (!known.includes(n)) {
      throw new InputError(`scenario ${def.name}`, 'seedFaults', `has no seedable fault "${n}"`,
        known.length ? `seedable faults: ${known.join(', ')}` : 'this scenario seeds no faults');
    }
  }
  return new Set(names);
}
