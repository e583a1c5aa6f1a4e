import { type FinalResults, Parser } from 'tap-parser';
import { describe, expect, it } from 'vitest';
import { kcidbStatus, toKcidb } from '../../src/report/kcidb.js';
import { toKtap } from '../../src/report/ktap.js';
import { kcidbValidator, sampleReport } from '../helpers/kcidb.js';

describe('KCIDB output', () => {
  it('is a valid KCIDB v5.3 document: a checkout and build per kernel, a test per check with a dotted path', () => {
    const doc = toKcidb([sampleReport(), { ...sampleReport(), startedAt: '2026-11-23T17:10:00.000Z' }], { host: 'lab1' });
    const validate = kcidbValidator();
    expect(validate(doc), JSON.stringify(validate.errors, null, 1)).toBe(true);
    expect(doc.checkouts).toHaveLength(1);
    expect(doc.builds).toHaveLength(1);
    expect(doc.tests).toHaveLength(2 * 7);
    expect(new Set(doc.tests.map((t) => t.id)).size).toBe(doc.tests.length);
    const byComment = (c: string) => doc.tests.find((t) => t.comment === c)!;
    expect(byComment('FOLL_PIN acquired grows by exactly 16 MiB of pages')).toMatchObject({
      path: 'tcelab.prereg-accounting.foll_pin_acquired_grows_by_exactly_16_mib_of_pages',
      status: 'PASS',
      number: { value: 4096, unit: 'pages' },
    });
    expect(byComment('VmLck grows by exactly 16 MiB')).toMatchObject({ status: 'FAIL', number: { value: 17408, unit: 'kB' } });
    // A known defect reproduced is the kernel reported faulty, not a pass.
    expect(byComment('the orphaned region keeps its pins while the process lives')).toMatchObject({
      status: 'FAIL',
      misc: { known_defect: 'defect 1: UNREGISTER of a mapped region' },
    });
    expect(byComment('map ordinary 4K-page memory into the 64K-page window').status).toBe('SKIP');
    expect(byComment('scenario ran to the end').status).toBe('ERROR');
    expect(doc.tests.find((t) => String(t.path).includes('.release.'))).toMatchObject({
      status: 'PASS',
      number: { value: 0.029, unit: 's' },
    });
    expect(doc.builds[0]).toMatchObject({ architecture: 'powerpc', config_name: 'powerpc64le', misc: { page_size: 4096 } });
    expect(doc.checkouts[0]).toMatchObject({ tree_name: 'debian-trixie', misc: { package_version: '6.12.107-1' } });
    // Within one run every path is distinct, a check recorded twice included.
    const r = sampleReport();
    r.checks.push({ ...r.checks[0]! });
    const paths = toKcidb([r]).tests.map((t) => t.path);
    expect(new Set(paths).size).toBe(paths.length);
  });

  it('the schema copy is the real one: a document it must refuse is refused', () => {
    const validate = kcidbValidator();
    const doc = toKcidb([sampleReport()]);
    (doc.tests[0] as Record<string, unknown>).status = 'KNOWN-DEFECT';
    (doc.tests[1] as Record<string, unknown>).path = 'tcelab.has space';
    expect(validate(doc)).toBe(false);
    expect(validate.errors!.map((e) => e.instancePath)).toEqual(expect.arrayContaining(['/tests/0/status', '/tests/1/path']));
    expect(kcidbStatus({ ...sampleReport().checks[0]!, status: 'known-defect' })).toBe('FAIL');
  });
});

describe('KTAP output', () => {
  it('is KTAP v1 a real TAP parser reads: a test per run, a subtest per check, known defects SKIP with the defect', async () => {
    const text = toKtap([
      sampleReport(),
      { ...sampleReport(), scenario: 'ddw-windows', passed: true, checks: [sampleReport().checks[0]!] },
    ]);
    expect(text.split('\n')[0]).toBe('KTAP version 1');
    expect(text).toMatch(/^ {4}ok 3 the orphaned region keeps its pins while the process lives # SKIP known defect: defect 1: UNREGISTER/m);
    expect(text).toMatch(/^ {4}not ok 2 VmLck grows by exactly 16 MiB\n {4}# measured 17408, expected 16384\n {4}# kB$/m);
    expect(text).toMatch(/^ {4}ok 6 a no\. in a name$/m);
    const children: FinalResults[] = [];
    const top = await new Promise<FinalResults>((resolve) => {
      const p = new Parser((r) => resolve(r));
      p.on('child', (c: Parser) => c.on('complete', (r: FinalResults) => children.push(r)));
      p.end(text);
    });
    expect(top).toMatchObject({ count: 2, pass: 1, fail: 1 });
    expect(children).toHaveLength(2);
    expect(children[0]).toMatchObject({ count: 6, pass: 4, fail: 2, skip: 2 });
    expect(children[1]).toMatchObject({ count: 1, pass: 1, fail: 0 });
  });
});
