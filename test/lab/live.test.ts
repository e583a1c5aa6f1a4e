import { describe, expect, it } from 'vitest';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import WebSocket from 'ws';
import { LiveServer } from '../../src/live/live-server.js';
import { runScenario } from '../../src/scenario/runner.js';
import type { ScenarioReport } from '../../src/scenario/scenario.js';
import { resolveScenario } from '../../src/scenario/registry.js';
import { expectPassed, testRuntimeRoot } from '../helpers/lab.js';
import { liveLabQemuPids } from '../helpers/processes.js';
import { launchChromium } from '../helpers/chromium.js';
import { scratchDir } from '../helpers/scratch.js';

function wsStatus(url: string): Promise<string> {
  return new Promise((resolve) => {
    const ws = new WebSocket(url);
    ws.on('open', () => {
      ws.close();
      resolve('open');
    });
    ws.on('unexpected-response', (_req, res) => resolve(`refused ${res.statusCode}`));
    ws.on('error', (e) => resolve(`error ${e.message}`));
  });
}

describe('live view', () => {
  it('serves a page on 127.0.0.1 that plots the run as it happens; a wrong token is refused', async () => {
    const live = new LiveServer();
    const url = await live.start(0);
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/\?token=[0-9a-f]{32}$/);
    const base = url.replace(/\?token=.*/, '');
    const wsBase = base.replace('http://', 'ws://');
    // Wrong or missing token: 403 for the page and for the WebSocket.
    expect((await fetch(`${base}?token=${'0'.repeat(32)}`)).status).toBe(403);
    expect((await fetch(base)).status).toBe(403);
    expect(await wsStatus(`${wsBase}ws?token=nope`)).toBe('refused 403');

    const root = testRuntimeRoot();
    // The page is up and live before the run starts (Chromium's start, however slow on a busy machine, is behind it;
    // seen twice when the page opened during the run: the run had ended, and its samples with it, before the page
    // counted them twice). The run then holds 16 MiB for 4 s: some 80 host samples, while the page counts 20 and
    // then one more.
    const dir = scratchDir('scn');
    writeFileSync(
      join(dir, 'live-run.json'),
      JSON.stringify({
        description: 'registers 16 MiB, holds it for 4 s, releases it',
        profile: 'emulated',
        steps: [
          { step: 'bind', device: 'edu1', as: 'edu' },
          { step: 'start-worker', as: 'w' },
          { step: 'open', worker: 'w', binding: 'edu' },
          { step: 'mark', as: 'before' },
          { step: 'alloc', worker: 'w', sizeMiB: 16, as: 'ram' },
          { step: 'register', worker: 'w', region: 'ram' },
          { step: 'expect-guest-pins', since: 'before', mib: 16 },
          { step: 'sleep', ms: 4000 },
          { step: 'stop-worker', worker: 'w' },
          { step: 'expect-release', since: 'before', withinSec: 10 },
        ],
      }),
    );
    const { def } = (await resolveScenario(join(dir, 'live-run.json')))!;
    let run: Promise<ScenarioReport> | undefined;
    let report: ScenarioReport | undefined;
    let pageFailure: unknown;
    // A fresh, empty profile for every run.
    const browser = await launchChromium();
    try {
      const page = await browser.newPage();
      const response = await page.goto(url);
      expect(response?.status()).toBe(200);
      await page.waitForFunction(() => document.getElementById('conn')?.textContent === 'live', undefined, { timeout: 30_000 });
      run = runScenario(def, { resultsDir: scratchDir('res'), runtimeRoot: root, live });
      await page.waitForFunction(() => document.getElementById('scenario')?.textContent === 'live-run on emulated', undefined, {
        timeout: 30_000,
      });
      // The chart updates during the run: the sample count keeps growing.
      const count = async () => Number(await page.textContent('#sample-count'));
      await page.waitForFunction(() => Number(document.getElementById('sample-count')?.textContent) > 20, undefined, { timeout: 30_000 });
      const first = await count();
      await page.waitForFunction((n) => Number(document.getElementById('sample-count')?.textContent) > n, first, { timeout: 5000 });
      expect(await count()).toBeGreaterThan(first);
      // Verdicts and phases appear as they are decided.
      await page.waitForSelector('#checks li.pass', { timeout: 60_000 });
      // The verdict appears when the run ends (PASS or FAIL; a FAIL is explained by the report below).
      await page.waitForFunction(() => /^(PASS|FAIL)$/.test(document.getElementById('verdict')?.textContent ?? ''), undefined, {
        timeout: 90_000,
      });
      expect(await page.textContent('#verdict')).toBe('PASS');
      expect(await page.locator('#events li').count()).toBeGreaterThan(5);
      const painted = await page.evaluate(() => {
        const c = document.getElementById('host') as HTMLCanvasElement;
        const d = c.getContext('2d')!.getImageData(0, 0, c.width, c.height).data;
        let n = 0;
        for (let i = 0; i < d.length; i += 4) if (d[i + 3]! > 0) n++;
        return n;
      });
      expect(painted).toBeGreaterThan(500);
      await page.screenshot({ path: '/tmp/tcelab-live.png' });
    } catch (err) {
      pageFailure = err;
    } finally {
      // Only cleanup here: an assertion in `finally` would replace the error of the page's wait that failed first.
      await browser.close();
      report = await run;
      await live.close();
    }
    // A failed run first (the page only shows its consequence), then what the page got wrong (the run may not have
    // started: the page failed before it).
    if (report) expectPassed(report);
    if (pageFailure) throw pageFailure;
    expect(liveLabQemuPids(root)).toEqual([]);
  });
});
