import type { ScenarioDefinition } from './scenario.js';
import { preregAccounting } from './builtin/prereg-accounting.js';
import { ddwWindows } from './builtin/ddw-windows.js';
import { guestRelease3 } from './builtin/guest-release.js';
import { shutdownRelease } from './builtin/shutdown-release.js';
import { ddwHotplug } from './builtin/ddw-hotplug.js';

export const builtinScenarios: ScenarioDefinition[] = [preregAccounting, ddwWindows, guestRelease3, shutdownRelease, ddwHotplug];

export function findScenario(name: string): ScenarioDefinition | undefined {
  return builtinScenarios.find((s) => s.name === name);
}
