import type { Spec } from '../../util/validate.js';
import { STEPS } from './steps.js';

/** Where docs/scenarios.md's table of steps sits; the table between the markers is generated from STEPS. */
export const STEP_TABLE_MARKERS = { begin: '<!-- steps:begin (generated from src/scenario/data/steps.ts) -->', end: '<!-- steps:end -->' };

function describeField(key: string, spec: Spec): string {
  const type =
    spec.type === 'string' && spec.enum
      ? spec.enum.join(' \\| ')
      : spec.type === 'string' && spec.patternHint
        ? spec.patternHint.replace(/^an? /, '').replace(/:.*$/, '')
        : spec.type === 'integer'
          ? `${spec.min}–${spec.max}`
          : spec.type === 'array' && spec.items.type === 'string' && spec.items.enum
            ? `array of ${spec.items.enum.join(' \\| ')}`
            : spec.type;
  return `\`${key}\`${spec.optional ? '?' : ''} (${type})`;
}

/** The table of steps (docs/scenarios.md): type, fields, what it does. */
export function stepTableMarkdown(): string {
  const rows = Object.entries(STEPS).map(([type, entry]) => {
    const fields = Object.entries(entry.fields as Record<string, Spec>).map(([k, s]) => describeField(k, s));
    return `| \`${type}\` | ${fields.join(', ') || '—'} | ${entry.doc} |`;
  });
  return ['| step | fields (`?`: optional) | what it does |', '|---|---|---|', ...rows].join('\n');
}

/** A page (docs/scenarios.md) with its table of steps replaced by the generated one. */
export function withStepTable(readme: string): string {
  const b = readme.indexOf(STEP_TABLE_MARKERS.begin);
  const e = readme.indexOf(STEP_TABLE_MARKERS.end);
  if (b < 0 || e < b) throw new Error(`the page has no ${STEP_TABLE_MARKERS.begin} … ${STEP_TABLE_MARKERS.end} block`);
  return `${readme.slice(0, b + STEP_TABLE_MARKERS.begin.length)}\n${stepTableMarkdown()}\n${readme.slice(e)}`;
}
