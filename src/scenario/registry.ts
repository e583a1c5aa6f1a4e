import type { ScenarioDefinition } from './scenario.js';
import { preregAccounting } from './builtin/prereg-accounting.js';
import { ddwWindows } from './builtin/ddw-windows.js';
import { guestRelease3 } from './builtin/guest-release.js';
import { shutdownRelease } from './builtin/shutdown-release.js';
import { ddwHotplug } from './builtin/ddw-hotplug.js';
import { registrationSoak } from './builtin/registration-soak.js';
import { listScenarioFiles, loadScenarioFile, type ScenarioFile } from './data/scenario-file.js';
import { definitionFromFile } from './data/interpreter.js';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { scenariosDir } from './data/scenario-file.js';

/** Procedures written in TypeScript; scenario files call them with a "do" step. */
export const procedures: ScenarioDefinition[] = [preregAccounting, ddwWindows, guestRelease3, shutdownRelease, ddwHotplug, registrationSoak];

/** Kept for callers that want the procedure itself. */
export const builtinScenarios = procedures;

export function findScenario(name: string): ScenarioDefinition | undefined {
  return procedures.find((s) => s.name === name);
}

/** A scenario by name: a file in scenarios/ (or a path), else a procedure. */
export async function resolveScenario(nameOrPath: string): Promise<{ def: ScenarioDefinition; file?: ScenarioFile } | undefined> {
  const isPath = nameOrPath.includes('/') || nameOrPath.endsWith('.json');
  if (isPath || existsSync(join(scenariosDir, `${nameOrPath}.json`))) {
    const file = await loadScenarioFile(nameOrPath);
    return { def: definitionFromFile(file, procedures), file };
  }
  const def = findScenario(nameOrPath);
  return def ? { def } : undefined;
}

export async function allScenarioFiles(): Promise<ScenarioFile[]> {
  return Promise.all((await listScenarioFiles()).map((n) => loadScenarioFile(n)));
}
