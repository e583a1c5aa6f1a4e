import { readFile, readdir } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { basename, join } from 'node:path';
import { Validator, parseJsonText, type Spec } from '../../util/validate.js';
import { InputError, TcelabError } from '../../util/errors.js';
import { jsonPathLines, lineOf } from '../../util/json-lines.js';
import { packageRoot } from '../../util/paths.js';
import { STEP_TYPES, isStepType, stepSpec, type ScenarioStep } from './steps.js';

export const scenariosDir = join(packageRoot, 'scenarios');

export type { ScenarioStep };

export interface ScenarioFile {
  name: string;
  path: string;
  description: string;
  profile: string;
  /** Reads system-wide host counters whose verdict another lab would disturb: never runs beside another lab. */
  exclusiveHost: boolean;
  /** Runs of this scenario in a suite (`tcelab run --all`), one lab each, with these options. */
  variants: Array<Record<string, string | number | boolean>>;
  steps: ScenarioStep[];
}

const fileSpec: Spec = {
  type: 'object',
  fields: {
    $schema: { type: 'string', optional: true },
    description: { type: 'string' },
    profile: { type: 'string', default: 'emulated', pattern: /^[A-Za-z0-9_./-]+$/ },
    exclusiveHost: { type: 'boolean', default: false },
    variants: { type: 'array', maxItems: 16, default: [{}], items: { type: 'map', values: { type: 'scalar' } } },
    steps: { type: 'array', maxItems: 500, items: { type: 'object', fields: {} } },
  },
};

/** Parses and validates a scenario file; errors name the field and its line. */
export function parseScenarioFile(text: string, path: string): ScenarioFile {
  const name = basename(path).replace(/\.json$/, '');
  const source = `scenario ${name}`;
  const raw = parseJsonText(text, source) as Record<string, unknown>;
  const lines = jsonPathLines(text);
  const withLine = (err: unknown): never => {
    if (err instanceof InputError) {
      const line = lineOf(lines, err.field);
      throw new InputError(source, `${err.field}${line ? ` (line ${line})` : ''}`, err.why, err.hint);
    }
    throw err;
  };
  const v = new Validator(source);
  try {
    // Steps are checked one by one against their own type's fields.
    const top = v.check({ ...raw, steps: Array.isArray(raw?.steps) ? raw.steps.map(() => ({})) : raw?.steps }, fileSpec) as Omit<
      ScenarioFile,
      'name' | 'path' | 'steps'
    >;
    const steps = (raw.steps as unknown[]).map((s, i) => {
      const type = (s as Record<string, unknown>)?.step;
      if (!isStepType(type)) {
        throw v.err(`steps[${i}].step`, `must be one of ${STEP_TYPES.join(', ')}, got ${JSON.stringify(type)}`);
      }
      return v.check(s, stepSpec(type), `steps[${i}]`) as ScenarioStep;
    });
    if (steps.length === 0) throw v.err('steps', 'must have at least one step');
    return { name, path, ...top, steps };
  } catch (err) {
    return withLine(err);
  }
}

export async function loadScenarioFile(nameOrPath: string): Promise<ScenarioFile> {
  const path = nameOrPath.includes('/') || nameOrPath.endsWith('.json') ? nameOrPath : join(scenariosDir, `${nameOrPath}.json`);
  if (!existsSync(path)) {
    throw new TcelabError(
      `scenario ${nameOrPath}`,
      `no such scenario file (${path})`,
      `known scenarios: ${(await listScenarioFiles()).join(', ')}`,
    );
  }
  return parseScenarioFile(await readFile(path, 'utf8'), path);
}

export async function listScenarioFiles(): Promise<string[]> {
  if (!existsSync(scenariosDir)) return [];
  return (await readdir(scenariosDir))
    .filter((f) => f.endsWith('.json'))
    .map((f) => f.replace(/\.json$/, ''))
    .sort();
}
