import { createHash } from 'node:crypto';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Check } from '../scenario/checks.js';
import type { ScenarioReport } from '../scenario/scenario.js';
import { uniquelyNamed } from '../util/names.js';

/**
 * KernelCI's KCIDB I/O format, version 5.3 (what KCIDB accepts today): a checkout and a build for every kernel under
 * test (its Debian package or local build), a test per check with a dotted path `tcelab.<scenario>.<check>`, the
 * measured value as a number with its unit where it is one, the environment (QEMU, profile, host), the log excerpt
 * and the run's output files. The tests validate every document against the published schema.
 */
export const KCIDB_VERSION = { major: 5, minor: 3 } as const;
const ORIGIN = 'tcelab';

type KcidbStatus = 'FAIL' | 'ERROR' | 'MISS' | 'PASS' | 'DONE' | 'SKIP';

export interface KcidbDocument {
  version: { major: 5; minor: 3 };
  checkouts: Array<Record<string, unknown>>;
  builds: Array<Record<string, unknown>>;
  tests: Array<Record<string, unknown>>;
}

const hash = (s: string) => createHash('sha256').update(s).digest('hex').slice(0, 16);

/** A path component: letters, digits, _ and - (KCIDB's pattern), from a check's name. */
export function pathComponent(name: string): string {
  return (
    name
      .toLowerCase()
      .replace(/[^a-z0-9_-]+/g, '_')
      .replace(/^_+|_+$/g, '')
      .slice(0, 120) || 'check'
  );
}

/** Checks that say the harness (not the kernel) failed: the run did not get to judge the kernel. */
const HARNESS_CHECKS = new Set(['scenario ran to the end', 'lab started', 'lab torn down and judged']);

/**
 * A check's status, faithfully: a known defect reproduced is the kernel reported faulty (FAIL, the defect named in
 * misc), a check that cannot apply is SKIP, a harness failure is ERROR.
 */
export function kcidbStatus(c: Check): KcidbStatus {
  if (c.status === 'pass') return 'PASS';
  if (c.status === 'not-applicable') return 'SKIP';
  if (c.status === 'known-defect') return 'FAIL';
  return HARNESS_CHECKS.has(c.name) ? 'ERROR' : 'FAIL';
}

/** The measured value as a KCIDB number, when it is one; the unit from the check's detail when that names one. */
function kcidbNumber(c: Check): { value: number; unit?: string } | undefined {
  if (!/^-?\d+(\.\d+)?$/.test(c.measured.trim())) return undefined;
  const unit = c.detail && /^(kB|pages|ms|s|MiB|bytes)$/.test(c.detail) ? c.detail : undefined;
  return { value: Number(c.measured), ...(unit ? { unit } : {}) };
}

const fileUrl = (path: string) => pathToFileURL(path).href;

export function toKcidb(reports: ScenarioReport[], opts: { host?: string } = {}): KcidbDocument {
  const doc: KcidbDocument = { version: KCIDB_VERSION, checkouts: [], builds: [], tests: [] };
  const seen = new Set<string>();
  const host = opts.host ?? hostname();
  for (const r of reports) {
    const k = r.kernel;
    const source = k
      ? `${k.source.spec} ${k.source.package ?? ''} ${k.source.version ?? ''} ${k.release}`
      : `unknown ${r.guestKernel ?? ''}`;
    const checkoutId = `${ORIGIN}:checkout-${hash(source)}`;
    const buildId = `${ORIGIN}:build-${hash(`${source} ${k?.pageSize ?? ''}`)}`;
    if (!seen.has(buildId)) {
      seen.add(buildId);
      const what = k?.source.package
        ? `Debian package ${k.source.package} ${k.source.version}`
        : (k?.source.spec ?? 'an unrecorded kernel');
      doc.checkouts.push({
        id: checkoutId,
        origin: ORIGIN,
        tree_name: k ? pathComponent(k.source.spec.replace(/^debian:/, 'debian-').replace(/[/@].*$/, '')) : 'unknown',
        comment: `the kernel under test: ${what}`,
        valid: true,
        misc: { kernel_spec: k?.source.spec, package: k?.source.package, package_version: k?.source.version, layout: k?.source.layout },
      });
      doc.builds.push({
        id: buildId,
        checkout_id: checkoutId,
        origin: ORIGIN,
        architecture: 'powerpc',
        config_name: k ? (k.pageSize === 65536 ? 'powerpc64le-64k' : 'powerpc64le') : 'unknown',
        comment: `${k?.release ?? r.guestKernel ?? 'unknown release'} (${what})`,
        status: 'PASS',
        misc: { release: k?.release ?? r.guestKernel, page_size: k?.pageSize, config: k?.config, modules: k?.modules },
      });
    }
    const run = hash(`${r.startedAt} ${r.resultsDir} ${r.scenario}`);
    const environment = {
      comment: `QEMU ${r.qemuVersion ?? '?'} (${r.qemuBinary ?? 'qemu-system-ppc64'}), profile ${r.profile}, host ${host}`,
      misc: {
        qemu_version: r.qemuVersion,
        qemu_binary: r.qemuBinary,
        profile: r.profile,
        host,
        lab_start: r.labStart,
        guest_ram_mib: r.guestRamMiB,
      },
    };
    const outputFiles = ['results.json', 'junit.xml', 'timeline.svg'].map((name) => ({ name, url: fileUrl(join(r.resultsDir, name)) }));
    // A suite labels a run <name>-r<k> (a repeat), a matrix <name>@<kernel>: the same test each time (the ids tell
    // the runs apart, the build tells the kernels apart), so the same path.
    const scenario = pathComponent(r.scenario.replace(/@.*$/, '').replace(/-r\d+$/, ''));
    const start = Date.parse(r.startedAt);
    uniquelyNamed(r.checks).forEach(({ item: c, name }, i) => {
      const status = kcidbStatus(c);
      const number = kcidbNumber(c);
      const excerpt = `${c.name}: measured ${c.measured}, expected ${c.expected}${c.detail ? ` (${c.detail})` : ''}`;
      doc.tests.push({
        id: `${ORIGIN}:${run}-${i + 1}`,
        build_id: buildId,
        origin: ORIGIN,
        path: `tcelab.${scenario}.${pathComponent(name)}`,
        comment: c.name,
        status,
        ...(number && status !== 'SKIP' ? { number } : {}),
        ...(Number.isFinite(start) ? { start_time: new Date(start + c.atMs).toISOString() } : {}),
        environment,
        log_excerpt: (c.knownDefect ? `${excerpt}\nknown defect: ${c.knownDefect}` : excerpt).slice(0, 16384),
        output_files: outputFiles,
        misc: {
          measured: c.measured,
          expected: c.expected,
          ...(c.detail ? { detail: c.detail } : {}),
          ...(c.knownDefect ? { known_defect: c.knownDefect } : {}),
          ...(c.notApplicable ? { not_applicable: c.notApplicable } : {}),
          results_dir: r.resultsDir,
        },
      });
    });
    // Release latencies: how long the counters took to return to baseline, as measurements of their own.
    for (const [j, v] of (r.releases ?? []).entries()) {
      doc.tests.push({
        id: `${ORIGIN}:${run}-release-${j + 1}`,
        build_id: buildId,
        origin: ORIGIN,
        path: `tcelab.${scenario}.release.${pathComponent(`${v.source}_${v.counter}`)}`,
        comment: `${v.source} ${v.counter} back to baseline after ${v.event}`,
        status: v.notJudged ? 'SKIP' : v.returned ? 'PASS' : 'FAIL',
        ...(v.returned && v.latencyMs !== undefined ? { number: { value: v.latencyMs / 1000, unit: 's' } } : {}),
        environment,
        log_excerpt:
          `baseline ${v.baseline}, peak ${v.peak}, final ${v.final}; ` +
          (v.notJudged ?? (v.returned ? `${v.latencyMs ?? 'late'} ms` : `not within ${v.timeoutMs} ms`)),
        misc: { results_dir: r.resultsDir },
      });
    }
  }
  return doc;
}
