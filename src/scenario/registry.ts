import type { ScenarioDefinition } from './scenario.js';
import { preregAccounting } from './procedures/prereg-accounting.js';
import { ddwWindows } from './procedures/ddw-windows.js';
import { guestReleaseCases } from './procedures/guest-release.js';
import { shutdownRelease } from './procedures/shutdown-release.js';
import { ddwHotplug } from './procedures/ddw-hotplug.js';
import { registrationSoak } from './procedures/registration-soak.js';
import { nestedPreregRelease } from './procedures/nested-prereg-release.js';
import { kvmTcePath } from './procedures/kvm-tce-path.js';
import { kvmVfioEarlyExit } from './procedures/kvm-vfio-early-exit.js';
import { dmaIntegrity } from './procedures/dma-integrity.js';
import { listScenarioFiles, loadScenarioFile, type ScenarioFile } from './data/scenario-file.js';
import { definitionFromFile } from './data/interpreter.js';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { scenariosDir } from './data/scenario-file.js';

/** Procedures written in TypeScript; scenario files call them with a "do" step. */
export const procedures: ScenarioDefinition[] = [
  preregAccounting,
  ddwWindows,
  guestReleaseCases,
  shutdownRelease,
  ddwHotplug,
  registrationSoak,
  nestedPreregRelease,
  kvmTcePath,
  kvmVfioEarlyExit,
  dmaIntegrity,
];

export function findProcedure(name: string): ScenarioDefinition | undefined {
  return procedures.find((s) => s.name === name);
}

/** A scenario by name: a file in scenarios/ (or a path), else a procedure. */
export async function resolveScenario(nameOrPath: string): Promise<{ def: ScenarioDefinition; file?: ScenarioFile } | undefined> {
  const isPath = nameOrPath.includes('/') || nameOrPath.endsWith('.json');
  // A path may hold a profile or a scenario: a scenario is the one with steps.
  if (isPath && !looksLikeScenario(nameOrPath)) return undefined;
  if (isPath || existsSync(join(scenariosDir, `${nameOrPath}.json`))) {
    const file = await loadScenarioFile(nameOrPath);
    return { def: definitionFromFile(file, procedures), file };
  }
  const def = findProcedure(nameOrPath);
  return def ? { def } : undefined;
}

function looksLikeScenario(path: string): boolean {
  try {
    const v = JSON.parse(readFileSync(path, 'utf8')) as unknown;
    return v !== null && typeof v === 'object' && 'steps' in v;
  } catch {
    // Unreadable or not JSON: let the scenario loader say what is wrong, unless it says "qemu".
    return existsSync(path) && !/"qemu"\s*:/.test(readFileSync(path, 'utf8'));
  }
}

export async function allScenarioFiles(): Promise<ScenarioFile[]> {
  return Promise.all((await listScenarioFiles()).map((n) => loadScenarioFile(n)));
}
