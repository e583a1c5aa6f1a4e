// Rewrites docs/scenarios.md's table of scenario steps from the step table (npm run docs); a unit test checks it is current.
import { readFileSync, writeFileSync } from 'node:fs';
import { withStepTable } from '../dist/scenario/data/step-docs.js';

const path = new URL('../docs/scenarios.md', import.meta.url);
writeFileSync(path, withStepTable(readFileSync(path, 'utf8')));
