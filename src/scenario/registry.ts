import type { ScenarioDefinition } from './scenario.js';
import { preregAccounting } from './builtin/prereg-accounting.js';
import { ddwWindows } from './builtin/ddw-windows.js';

export const builtinScenarios: ScenarioDefinition[] = [preregAccounting, ddwWindows];

export function findScenario(name: string): ScenarioDefinition | undefined {
  return builtinScenarios.find((s) => s.name === name);
}
