// What the pipeline's merge job published, checked: both shards came back, the merged KCIDB document is valid
// against KCIDB's published schema (test/fixtures/kcidb), and the merged JUnit holds every run.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';

const dir = process.argv[2];
const summary = JSON.parse(readFileSync(join(dir, 'summary.json'), 'utf8'));
const fail = (why) => {
  process.stderr.write(`check-merged: ${why}\n`);
  process.exit(1);
};
const shards = summary.inputs
  .map((i) => i.shard && `${i.shard.index}/${i.shard.count}`)
  .filter(Boolean)
  .sort();
if (shards.join(' ') !== '1/2 2/2') fail(`expected shards 1/2 and 2/2, got ${shards.join(' ') || 'none'}`);
if (summary.missing.length) fail(`missing: ${summary.missing.join('; ')}`);
if (!summary.passed)
  fail(
    `a run failed: ${summary.runs
      .filter((r) => !r.passed)
      .map((r) => r.label)
      .join(', ')}`,
  );
const schema = JSON.parse(readFileSync(new URL('../test/fixtures/kcidb/kcidb.v5.3.schema.json', import.meta.url), 'utf8'));
const ajv = new Ajv2020({ allErrors: true, strict: false });
addFormats(ajv);
const kcidb = JSON.parse(readFileSync(join(dir, 'kcidb.json'), 'utf8'));
if (!ajv.validate(schema, kcidb)) fail(`kcidb.json is not valid KCIDB v5.3: ${ajv.errorsText()}`);
const junit = readFileSync(join(dir, 'junit.xml'), 'utf8');
const suites = (junit.match(/<testsuite /g) ?? []).length;
if (suites !== summary.runs.length) fail(`junit.xml has ${suites} suites for ${summary.runs.length} runs`);
process.stdout.write(
  `check-merged: ${summary.runs.length} runs from shards ${shards.join(', ')}; kcidb.json valid (${kcidb.tests.length} tests); junit.xml ${suites} suites\n`,
);
