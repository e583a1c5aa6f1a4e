import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import type { Check } from '../../src/scenario/checks.js';
import type { ScenarioReport } from '../../src/scenario/scenario.js';
import { packageRoot } from '../../src/util/paths.js';

/** KCIDB's published schema (test/fixtures/kcidb/ORIGIN.md), with formats checked as KCIDB checks them. */
export function kcidbValidator() {
  const schema = JSON.parse(readFileSync(join(packageRoot, 'test/fixtures/kcidb/kcidb.v5.3.schema.json'), 'utf8'));
  const ajv = new Ajv2020({ allErrors: true, strict: false });
  (addFormats as unknown as (a: Ajv2020) => void)(ajv);
  return ajv.compile(schema);
}

const check = (name: string, status: Check['status'], extra: Partial<Check> = {}): Check => ({
  name,
  pass: status !== 'fail',
  status,
  expected: '4096',
  measured: '4096',
  atMs: 1200,
  ...extra,
});

export const sampleReport = (): ScenarioReport =>
  ({
    scenario: 'prereg-accounting',
    profile: 'emulated',
    options: {},
    passed: false,
    startedAt: '2026-11-23T17:00:00.000Z',
    durationMs: 15000,
    guestKernel: '6.12.107+deb13-powerpc64le',
    qemuVersion: '7.2.22',
    qemuBinary: 'qemu-system-ppc64',
    kernel: {
      release: '6.12.107+deb13-powerpc64le',
      pageSize: 4096,
      config: { VFIO_IOMMU_SPAPR_TCE: 'm' },
      modules: { vfio: 'module' },
      source: { spec: 'debian:trixie', package: 'linux-image-6.12.107+deb13-powerpc64le', version: '6.12.107-1', layout: 'single' },
    },
    checks: [
      check('FOLL_PIN acquired grows by exactly 16 MiB of pages', 'pass', { detail: 'pages' }),
      check('VmLck grows by exactly 16 MiB', 'fail', { measured: '17408', expected: '16384', detail: 'kB' }),
      check('the orphaned region keeps its pins while the process lives', 'known-defect', {
        knownDefect: 'defect 1: UNREGISTER of a mapped region',
      }),
      check('map ordinary 4K-page memory into the 64K-page window', 'not-applicable', { notApplicable: 'the kernel has 64 KiB pages' }),
      check('scenario ran to the end', 'fail', { measured: 'agent gone', expected: 'no error' }),
      check('a # in a name', 'pass'),
    ],
    phases: [],
    releases: [
      {
        source: 'host',
        counter: 'unattributedPinnedPages',
        baseline: 0,
        peak: 10,
        final: 0,
        returned: true,
        tolerance: 0,
        direction: 'not-above',
        latencyMs: 29,
        event: 'QEMU exit',
        timeoutMs: 10000,
      },
    ],
    timings: [],
    samples: [],
    sampling: { hostRateHz: 20, guestRateHz: 5, hostOverruns: 0, gaps: 0 },
    resultsDir: '/tmp/results/prereg-accounting-1',
  }) as ScenarioReport;
