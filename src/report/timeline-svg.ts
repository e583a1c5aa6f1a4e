import type { ScenarioReport } from '../scenario/scenario.js';
import type { Sample } from '../probes/sampler.js';

/**
 * timeline.svg: pinned memory over time, host panel above guest panel, with
 * the run's phases as vertical markers, so that "did everything come back,
 * and when" is visible at a glance. Self-contained SVG, no scripts.
 */
interface Series {
  label: string;
  color: string;
  dash?: string;
  points: Array<[number, number]>;
}

const W = 1100;
const PANEL_H = 220;
const LEFT = 70;
const RIGHT = 210;
const TOP = 40;
const GAP = 60;
const PAGE = 4096;

const esc = (s: string) => s.replace(/[<>&"]/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;' })[c]!);
const mib = (bytes: number) => bytes / (1024 * 1024);

function series(samples: Sample[], label: string, color: string, value: (s: Sample) => number | undefined, dash?: string): Series {
  const points: Array<[number, number]> = [];
  for (const s of samples) {
    const v = value(s);
    if (v !== undefined) points.push([s.t / 1000, v]);
  }
  return { label, color, points, dash };
}

function niceMax(v: number): number {
  if (v <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function panel(title: string, y0: number, all: Series[], tMax: number, phases: ScenarioReport['phases']): string {
  const ss = all.filter((s) => s.points.length > 0);
  const vMax = niceMax(Math.max(0, ...ss.flatMap((s) => s.points.map((p) => p[1]))) * 1.05);
  const plotW = W - LEFT - RIGHT;
  const x = (t: number) => LEFT + (t / tMax) * plotW;
  const y = (v: number) => y0 + PANEL_H - (v / vMax) * PANEL_H;
  const out: string[] = [];
  out.push(`<text x="${LEFT + 24}" y="${y0 - 8}" class="panel">${esc(title)}</text>`);
  out.push(`<rect x="${LEFT}" y="${y0}" width="${plotW}" height="${PANEL_H}" class="frame"/>`);
  for (let i = 0; i <= 4; i++) {
    const v = (vMax * i) / 4;
    out.push(`<line x1="${LEFT}" x2="${LEFT + plotW}" y1="${y(v)}" y2="${y(v)}" class="grid"/>`);
    out.push(`<text x="${LEFT - 6}" y="${y(v) + 4}" class="tick" text-anchor="end">${v >= 100 ? v.toFixed(0) : v.toFixed(1)}</text>`);
  }
  out.push(
    `<text x="16" y="${y0 + PANEL_H / 2}" class="axis" transform="rotate(-90 16 ${y0 + PANEL_H / 2})" text-anchor="middle">MiB</text>`,
  );
  phases.forEach((p, i) => {
    const px = x(p.atMs / 1000);
    out.push(`<line x1="${px}" x2="${px}" y1="${y0}" y2="${y0 + PANEL_H}" class="phase"/>`);
    // Numbered markers, staggered in two rows; the key below the chart names them.
    out.push(`<text x="${px}" y="${y0 - (i % 2 ? 2 : 12)}" class="phasenum" text-anchor="middle">${i + 1}</text>`);
  });
  ss.forEach((s, i) => {
    // Step lines: a counter holds its value until the next sample.
    let d = '';
    s.points.forEach(([t, v], j) => {
      d += j === 0 ? `M${x(t).toFixed(1)},${y(v).toFixed(1)}` : `H${x(t).toFixed(1)}V${y(v).toFixed(1)}`;
    });
    out.push(
      `<path d="${d}" fill="none" stroke="${s.color}" stroke-width="${s.dash ? 2 : 3}"${s.dash ? ` stroke-dasharray="${s.dash}"` : ''}/>`,
    );
    const ly = y0 + 14 + i * 20;
    out.push(
      `<line x1="${W - RIGHT + 16}" x2="${W - RIGHT + 40}" y1="${ly - 4}" y2="${ly - 4}" stroke="${s.color}" ` +
        `stroke-width="3"${s.dash ? ` stroke-dasharray="${s.dash}"` : ''}/>`,
    );
    const last = s.points.at(-1)![1];
    out.push(`<text x="${W - RIGHT + 46}" y="${ly}" class="legend">${esc(s.label)} (${last.toFixed(1)})</text>`);
  });
  if (ss.length === 0)
    out.push(`<text x="${LEFT + plotW / 2}" y="${y0 + PANEL_H / 2}" class="axis" text-anchor="middle">no samples</text>`);
  return out.join('\n');
}

export function renderTimelineSvg(r: ScenarioReport): string {
  const host = r.samples.filter((s) => s.source === 'host');
  const guest = r.samples.filter((s) => s.source === 'guest');
  const tMax = Math.max(1, ...r.samples.map((s) => s.t / 1000), ...r.phases.map((p) => p.atMs / 1000)) * 1.02;
  const plotW = W - LEFT - RIGHT;
  const x = (t: number) => LEFT + (t / tMax) * plotW;
  const y1 = TOP + 56;
  const y2 = y1 + PANEL_H + GAP;
  const H = y2 + PANEL_H + 80 + Math.ceil(r.phases.length / 3) * 15 + r.releases.length * 16 + 20;
  const verdict = r.passed ? 'PASS' : 'FAIL';
  const hostPanel = panel(
    'Host (QEMU’s machine)',
    y1,
    [
      series(host, 'pinned (FOLL_PIN)', '#d62728', (s) => mib(s.counters.pinnedPages * PAGE)),
      series(host, 'Mlocked', '#1f77b4', (s) => mib(s.counters.mlockedKb * 1024)),
      series(host, 'QEMU VmLck', '#ff7f0e', (s) => (s.counters.vmLckKb !== undefined ? mib(s.counters.vmLckKb * 1024) : undefined), '6 4'),
    ],
    tMax,
    r.phases,
  );
  const guestPanel = panel(
    'Guest (through the agent)',
    y2,
    [
      series(guest, 'pinned (FOLL_PIN)', '#d62728', (s) => mib(s.counters.pinnedPages * PAGE)),
      series(
        guest,
        'watched process VmLck',
        '#2ca02c',
        (s) => (s.counters.vmLckKb !== undefined ? mib(s.counters.vmLckKb * 1024) : undefined),
        '6 4',
      ),
      series(guest, 'Mlocked', '#1f77b4', (s) => mib(s.counters.mlockedKb * 1024), '2 3'),
    ],
    tMax,
    r.phases,
  );
  // The phase key: number, name and time, in three columns under the chart.
  const keyTop = y2 + PANEL_H + 60;
  const colW = (W - LEFT - 20) / 3;
  const rows = Math.ceil(r.phases.length / 3);
  const labels = r.phases.map((p, i) => {
    const col = Math.floor(i / Math.max(1, rows));
    const row = i % Math.max(1, rows);
    return (
      `<text x="${LEFT + col * colW}" y="${keyTop + row * 15}" class="phaselabel"><tspan ` +
      `class="phasenum">${i + 1}</tspan> ${esc(p.name)} (${(p.atMs / 1000).toFixed(2)} s)</text>`
    );
  });
  const ticks: string[] = [];
  const step = niceMax(tMax / 10);
  for (let t = 0; t <= tMax; t += step) {
    ticks.push(`<text x="${x(t)}" y="${y2 + PANEL_H + 16}" class="tick" text-anchor="middle">${t.toFixed(step < 1 ? 1 : 0)}</text>`);
  }
  const releases = r.releases.map(
    (v, i) =>
      `<text x="${LEFT}" y="${y2 + PANEL_H + 70 + Math.ceil(r.phases.length / 3) * 15 + i * 16}" ` +
      `class="note">${esc(
        `${v.source} ${v.counter}: ` +
          (v.notJudged
            ? "not judged (the lab's part could not be told from its neighbours')"
            : v.returned && v.latencyMs === undefined
              ? `back to baseline once the neighbours held still, after ${v.event}`
              : v.returned
                ? `back to baseline ${v.latencyMs} ms after ${v.event}`
                : `NOT back to baseline within ${v.timeoutMs} ms of ${v.event}`) +
          ` (baseline ${v.baseline}, peak ${v.peak}, final ${v.final})`,
      )}</text>`,
  );
  return `<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif">
<style>
  .title { font-size: 18px; font-weight: bold; }
  .sub { font-size: 12px; fill: #444; }
  .panel { font-size: 14px; font-weight: bold; }
  .frame { fill: #fcfcfc; stroke: #999; }
  .grid { stroke: #e4e4e4; }
  .tick { font-size: 11px; fill: #555; }
  .axis { font-size: 12px; fill: #333; }
  .legend { font-size: 12px; }
  .phase { stroke: #888; stroke-dasharray: 4 3; }
  .phaselabel { font-size: 11px; fill: #333; }
  .phasenum { font-size: 10px; font-weight: bold; fill: #555; }
  .note { font-size: 12px; fill: #222; }
  .pass { fill: #2ca02c; } .fail { fill: #d62728; }
</style>
<rect width="100%" height="100%" fill="white"/>
<text x="${LEFT}" y="28" class="title">tcelab ${esc(r.scenario)} on ${esc(r.profile)}: <tspan class="${verdict.toLowerCase()}">${verdict}</tspan></text>
<text x="${LEFT}" y="48" class="sub">${esc(
    `guest ${r.guestKernel ?? '?'}, QEMU ${r.qemuVersion ?? '?'}, ${r.startedAt}, ` +
      `${r.checks.filter((c) => c.status === 'pass').length}/${r.checks.length} checks passed`,
  )}</text>
${labels.join('\n')}
${hostPanel}
${guestPanel}
${ticks.join('\n')}
<text x="${LEFT + plotW / 2}" y="${y2 + PANEL_H + 34}" class="axis" text-anchor="middle">seconds since the run began</text>
${releases.join('\n')}
</svg>
`;
}
