import { describe, expect, it } from 'vitest';
import { toJunitXml } from '../../src/report/junit.js';
import { renderTimelineSvg } from '../../src/report/timeline-svg.js';
import type { ScenarioReport } from '../../src/scenario/scenario.js';

const report = (): ScenarioReport => ({
  scenario: 's',
  profile: 'p',
  options: {},
  passed: false,
  startedAt: '2026-01-01T00:00:00Z',
  durationMs: 1500,
  resultsDir: '/r',
  checks: [
    { name: 'ok <1>', pass: true, status: 'pass', expected: '1', measured: '1', atMs: 10 },
    { name: 'bad & worse', pass: false, status: 'fail', expected: '0', measured: '5', detail: 'x', atMs: 20 },
    { name: 'defect', pass: false, status: 'known-defect', knownDefect: 'upstream bug', expected: 'EBUSY', measured: 'success', atMs: 30 },
  ],
  phases: [
    { name: 'launch', atMs: 0, wallTime: '' },
    { name: 'exit', atMs: 1000, wallTime: '' },
  ],
  timings: [],
  releases: [
    {
      source: 'host',
      counter: 'pinnedPages',
      baseline: 0,
      peak: 10,
      final: 0,
      returned: true,
      tolerance: 0,
      direction: 'both',
      latencyMs: 20,
      event: 'QEMU exit',
      timeoutMs: 10000,
    },
  ],
  samples: [
    { t: 0, source: 'host', counters: { follPinAcquired: 0, follPinReleased: 0, pinnedPages: 0, mlockedKb: 100 } },
    { t: 500, source: 'host', counters: { follPinAcquired: 10, follPinReleased: 0, pinnedPages: 10, mlockedKb: 2000, vmLckKb: 1900 } },
    { t: 1200, source: 'host', counters: { follPinAcquired: 10, follPinReleased: 10, pinnedPages: 0, mlockedKb: 100 } },
  ],
  sampling: { hostRateHz: 20, guestRateHz: 5, hostOverruns: 0, gaps: 0 },
});

describe('report writers', () => {
  it('JUnit: one testcase per check, failures and skipped known defects, escaped', () => {
    const xml = toJunitXml([report()]);
    expect(xml).toContain('<testsuite name="s (p)" tests="3" failures="1" errors="0" skipped="1"');
    expect(xml).toContain('name="ok &lt;1&gt;"');
    expect(xml).toContain('<failure message="measured 5, expected 0">x</failure>');
    expect(xml).toContain('<skipped message="known defect: upstream bug"/>');
  });

  it('timeline SVG: both panels, the series, numbered phases and release notes', () => {
    const svg = renderTimelineSvg(report());
    expect(svg).toContain('<svg xmlns="http://www.w3.org/2000/svg"');
    expect(svg).toContain('Host (QEMU’s machine)');
    expect(svg).toContain('Guest (through the agent)');
    expect(svg).toContain('no samples');
    expect(svg).toMatch(/<path d="M[^"]+" fill="none" stroke="#d62728"/);
    expect(svg).toContain('launch (0.00 s)');
    expect(svg).toContain('host pinnedPages: back to baseline 20 ms after QEMU exit');
    expect(svg).toContain('class="fail">FAIL</tspan>');
  });
});
