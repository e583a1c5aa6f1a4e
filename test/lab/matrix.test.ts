import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { packageRoot } from '../../src/util/paths.js';
import { launchChromium } from '../helpers/chromium.js';
import { judgedNotPassing, runtimeDirsIn, testRuntimeRoot } from '../helpers/lab.js';
import { liveLabQemuPids } from '../helpers/processes.js';
import { scratchDir } from '../helpers/scratch.js';

const cli = join(packageRoot, 'dist/cli/main.js');

// The kernel is an input: trixie's 6.12 and the newest kernel the mirror serves (experimental, 7.x), each in its
// own image, the same scenarios on both, one matrix. The first run downloads the new kernel (≈86 MB of debs).
/** KTAP result lines of run.sh's output: check name → ok, and the diagnostics after it. */
function ktapResults(output: string): Map<string, { ok: boolean; diagnostics: string }> {
  const out = new Map<string, { ok: boolean; diagnostics: string }>();
  const lines = output.split('\n');
  for (const [i, line] of lines.entries()) {
    const m = /^(ok|not ok) \d+ (.*)$/.exec(line);
    if (!m) continue;
    const rest = lines.slice(i + 1);
    const next = rest.findIndex((l) => /^(ok|not ok) \d+ |^# \d+ of \d+ checks failed/.test(l));
    out.set(m[2]!, { ok: m[1] === 'ok', diagnostics: rest.slice(0, next < 0 ? undefined : next).join('\n') });
  }
  return out;
}

describe("kernel matrix, end to end (and the suite's runs of prereg-accounting and ddw-windows)", () => {
  /** The matrix's results dir: the reproducer below is cut from its runs. */
  let matrixResults: string | undefined;

  it('prereg-accounting and ddw-windows on debian:trixie and debian:experimental', () => {
    const root = testRuntimeRoot();
    const results = scratchDir('res');
    const r = spawnSync(
      process.execPath,
      [cli, 'matrix', 'prereg-accounting', 'ddw-windows', '--kernels', 'debian:trixie,debian:experimental', '--results', results, '--json'],
      { env: { ...process.env, TCELAB_RUNTIME_DIR: root }, encoding: 'utf8', timeout: 840_000 },
    );
    expect(r.status, r.stderr.slice(-3000)).toBe(0);
    const m = JSON.parse(readFileSync(join(results, 'matrix.json'), 'utf8'));
    expect(m.columns.map((c: { label: string }) => c.label)).toEqual(['trixie', 'experimental']);
    const [old, latest] = m.columns;
    expect(old.kernelRelease).toMatch(/^6\.12\./);
    expect(old.kernelPackage).toMatch(/^linux-image-6\.12\.\d+\+deb13-powerpc64le 6\.12\./);
    expect(latest.kernelRelease).toMatch(/^7\./);
    expect(latest.kernelPackage).toMatch(/^linux-image-7\.\d+[^ ]*-powerpc64le 7\./);
    for (const c of m.columns) expect(c.pageSize).toBe(4096);
    // Every check has a verdict on both kernels; defect 1 (unregister while mapped) is in both.
    for (const row of m.rows)
      for (const c of m.columns) expect(row.cells[c.label].status, `${row.check} on ${c.label}`).not.toBe('not-run');
    type Row = { check: string; cells: Record<string, { status: string; resultsDir: string }> };
    const defect = (m.rows as Row[]).find((x) => /unregister/i.test(x.check) && x.cells.trixie!.status === 'known-defect')!;
    expect(defect.cells.experimental!.status).toBe('known-defect');
    // Each run's report says what ran.
    const run = JSON.parse(readFileSync(join(defect.cells.experimental!.resultsDir, 'results.json'), 'utf8'));
    expect(run.kernel).toMatchObject({
      pageSize: 4096,
      config: { VFIO_IOMMU_SPAPR_TCE: 'm', VFIO_CONTAINER: 'y' },
      source: { spec: 'debian:experimental', layout: 'split' },
    });
    expect(run.qemuBinary).toBe('debian:trixie');
    // On trixie's 6.12, what each scenario measured (these runs are the suite's runs of both scenarios).
    const trixie = (scenario: string) => JSON.parse(readFileSync(join(results, `${scenario}@trixie`, 'results.json'), 'utf8'));
    const byName = (report: { checks: Array<{ name: string; status: string; measured: string; pass: boolean }> }, prefix: string) => {
      const c = report.checks.find((x) => x.name.startsWith(prefix));
      if (!c) throw new Error(`no check named ${prefix}…`);
      return c;
    };
    const prereg = trixie('prereg-accounting');
    expect(prereg.error).toBeUndefined();
    expect(byName(prereg, 'VmLck grows by exactly 32 MiB').measured).toBe('32768');
    expect(byName(prereg, 'FOLL_PIN acquired grows by exactly 32 MiB').measured).toBe('8192');
    expect(byName(prereg, 'registering the same region again').measured).toBe('error EBUSY');
    expect(byName(prereg, 'unregistering a region that was never registered').measured).toBe('error ENOENT');
    expect(byName(prereg, 'registering a misaligned range').measured).toBe('error EINVAL');
    expect(byName(prereg, 'its pins are released').status).toBe('pass');
    // Unregister-while-mapped either is refused (fixed kernel) or reproduces the documented defect.
    expect(['pass', 'known-defect']).toContain(byName(prereg, 'unregistering a region while it is mapped').status);
    expect(prereg.checks.filter((c: { status: string }) => c.status === 'fail')).toEqual([]);
    const preregDir = join(results, 'prereg-accounting@trixie');
    expect(existsSync(join(preregDir, 'artifacts', 'console.log'))).toBe(true);
    expect(readFileSync(join(preregDir, 'artifacts', 'agent-transcript.log'), 'utf8')).toMatch(/"execute":"worker"/);
    const ddw = trixie('ddw-windows');
    expect(byName(ddw, 'host view shows exactly the 64K-page window').measured).toMatch(
      /80000101:0x800000000000000\+0x40000000 \(64 KiB pages\)/,
    );
    expect(byName(ddw, 'host view shows exactly the 4K-page window').measured).toMatch(
      /80000101:0x800000000000000\+0x10000000 \(4 KiB pages\)/,
    );
    expect(byName(ddw, 'map ordinary 4K-page memory into the 64K-page window').measured).toBe('error EINVAL');
    expect(byName(ddw, 'windows beyond max_dynamic_windows_supported').pass).toBe(true);
    expect(ddw.checks.filter(judgedNotPassing)).toEqual([]);
    expect(runtimeDirsIn(root)).toEqual([]);
    const junit = readFileSync(join(results, 'junit.xml'), 'utf8');
    expect(junit).toMatch(/<testsuite name="tcelab.matrix.trixie"[\s\S]*<testsuite name="tcelab.matrix.experimental"/);
    expect(liveLabQemuPids(root)).toEqual([]);
    matrixResults = results;
  }, 900_000);

  // Defects that travel: the bundle cut from the trixie run reproduces defect 1 in a fresh guest booted without
  // the agent, with nothing of tcelab in it but the bundle; its report names both kernels of the matrix.
  it('repro export of the trixie prereg-accounting run → repro try: the same checks fail with the same values', () => {
    if (!matrixResults) throw new Error('the matrix test above did not finish: no runs to cut a reproducer from');
    const preregDir = join(matrixResults, 'prereg-accounting@trixie');
    const lab = new Map(
      (
        JSON.parse(readFileSync(join(preregDir, 'results.json'), 'utf8')).checks as Array<{
          name: string;
          status: string;
          measured: string;
        }>
      ).map((c) => [c.name, c]),
    );
    // This test is about the defect travelling: it needs a kernel that has it.
    expect(lab.get('unregistering a region while it is mapped')?.status).toBe('known-defect');
    const bundleDir = join(scratchDir('res'), 'bundle');
    const exported = spawnSync(
      process.execPath,
      [cli, 'repro', 'export', preregDir, '--matrix', matrixResults, '--out', bundleDir, '--json'],
      {
        encoding: 'utf8',
        timeout: 120_000,
      },
    );
    expect(exported.status, exported.stderr.slice(-2000)).toBe(0);
    expect(JSON.parse(exported.stdout)).toMatchObject({
      recipe: 'unregister-while-mapped',
      check: 'unregistering a region while it is mapped',
    });
    for (const f of ['tcelab-agent', 'steps.jsonl', 'run.sh', 'REPORT.txt']) expect(existsSync(join(bundleDir, f)), f).toBe(true);
    expect(existsSync(`${bundleDir}.tar.gz`)).toBe(true);
    const text = readFileSync(join(bundleDir, 'REPORT.txt'), 'utf8');
    expect(text).toMatch(/^Subject: vfio\/spapr_tce: UNREGISTER_MEMORY of a mapped region returns 0, leaks its pins\n/);
    // Both kernels of the matrix, from the matrix.
    expect(text).toMatch(
      /\nKernels \(tcelab matrix [^)]+\)\n {2}reproduces +6\.12\.\S+ \(6\.12\.[^)]+\), 4 KiB pages\n {2}reproduces +7\.\S+ \(7\.[^)]+\), 4 KiB pages\n/,
    );
    // The WARNING: this run's own when the mm went before it ended, else the other kernel's run (said in the header).
    expect(text).toMatch(
      /Kernel log(?: \(from the 7\.\S+ run of the matrix[^)]*\))?\n {2}WARNING: .*arch\/powerpc\/mm\/book3s64\/mmu_context\.c:\d+.*destroy_context/,
    );
    expect(text).toContain('CONFIG_VFIO_IOMMU_SPAPR_TCE=m');

    const root = testRuntimeRoot();
    const tried = spawnSync(process.execPath, [cli, 'repro', 'try', bundleDir, '--results', scratchDir('res'), '--json'], {
      env: { ...process.env, TCELAB_RUNTIME_DIR: root },
      encoding: 'utf8',
      timeout: 300_000,
    });
    // Exit 1: run.sh says the defect reproduced.
    expect(tried.status, tried.stderr.slice(-3000)).toBe(1);
    const outcome = JSON.parse(tried.stdout) as { exitCode: number; output: string; kernelRelease: string };
    expect(outcome.kernelRelease).toMatch(/^6\.12\./);
    const ktap = ktapResults(outcome.output);
    expect(ktap.get('unregistering a region while it is mapped')?.ok, outcome.output).toBe(false);
    expect(ktap.get('unregistering a region while it is mapped')!.diagnostics).toContain('expected EBUSY, observed success');
    // The pins the lab measured after the worker exited are the pins the bundle measures.
    const exited = lab.get('pinned pages back to baseline after the worker exits')!;
    expect(ktap.get('pinned pages back to baseline after the worker exits')!.diagnostics).toContain(`observed ${exited.measured}`);
    expect(ktap.get('guest kernel logged no panic, Oops, soft lockup, hard lockup, BUG, WARNING, RCU stall, hung task')?.ok).toBe(false);
    expect(outcome.output).toMatch(/# \| WARNING: .*destroy_context/);
    // What holds on any kernel holds here too.
    expect(ktap.get('registering 32 MiB pins 32 MiB of pages')?.ok).toBe(true);
    expect(ktap.get('unmapping it')?.ok).toBe(true);
    expect(runtimeDirsIn(root)).toEqual([]);
    expect(liveLabQemuPids(root)).toEqual([]);
  }, 360_000);

  it('its page shows the same matrix in Chromium, with nothing loaded from anywhere else', async () => {
    const results = scratchDir('res');
    // A matrix page from pure logic is enough here: what the page shows is what matrix.json holds.
    const { buildMatrix } = await import('../../src/matrix/matrix.js');
    const { matrixHtml } = await import('../../src/matrix/matrix-output.js');
    const m = buildMatrix(
      [
        { label: 'trixie', kernel: 'debian:trixie' },
        { label: 'experimental', kernel: 'debian:experimental' },
      ],
      [
        {
          scenario: 'p',
          column: 'trixie',
          report: {
            checks: [{ name: 'c', status: 'known-defect', pass: true, expected: '', measured: '', atMs: 0 }],
            resultsDir: '/a',
            passed: true,
          } as never,
        },
        {
          scenario: 'p',
          column: 'experimental',
          report: {
            checks: [{ name: 'c', status: 'pass', pass: true, expected: '', measured: '', atMs: 0 }],
            resultsDir: '/b',
            passed: true,
          } as never,
        },
      ],
    );
    const file = join(results, 'matrix.html');
    (await import('node:fs')).writeFileSync(file, matrixHtml(m));
    const browser = await launchChromium();
    try {
      const page = await browser.newPage();
      const requests: string[] = [];
      page.on('request', (req) => requests.push(req.url()));
      await page.goto(pathToFileURL(file).href);
      expect(await page.locator('#matrix thead th[data-column]').allTextContents()).toEqual([
        expect.stringMatching(/^trixie/),
        expect.stringMatching(/^experimental/),
      ]);
      expect(await page.locator('#matrix tbody td.defect').count()).toBe(1);
      expect(await page.locator('#matrix tbody td.pass .change.fixed').textContent()).toBe('fixed here');
      expect(await page.locator('#changes li.fixed').textContent()).toMatch(/Fixed in experimental \(since trixie\): p: c/);
      expect(requests.every((u) => u.startsWith('file:'))).toBe(true);
    } finally {
      await browser.close();
    }
  });
});
