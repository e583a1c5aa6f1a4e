/** The live page: one self-contained document (no external scripts, styles or fonts). */
export function livePage(): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>tcelab live</title>
<style>
 body { font-family: sans-serif; margin: 16px; color: #222; }
 h1 { font-size: 18px; margin: 0 0 4px; } #meta { color: #555; font-size: 13px; margin-bottom: 8px; }
 .row { display: flex; gap: 16px; } canvas { border: 1px solid #ccc; background: #fcfcfc; }
 .panel { font-weight: bold; margin: 8px 0 2px; font-size: 14px; }
 ul { list-style: none; padding: 0; margin: 0; font-size: 12px; max-height: 260px; overflow: auto; width: 460px; }
 li { padding: 2px 0; border-bottom: 1px solid #eee; } .pass { color: #2ca02c; } .fail { color: #d62728; } .known-defect { color: #b8860b; }
 .legend span { margin-right: 12px; font-size: 12px; }
</style></head>
<body>
<h1>tcelab <span id="scenario">…</span> <span id="verdict"></span></h1>
<div id="meta">samples: <span id="sample-count">0</span> · connection: <span id="conn">connecting</span></div>
<div class="row"><div>
 <div class="panel">Host: pinned / Mlocked / QEMU VmLck (MiB)</div><canvas id="host" width="640" height="200"></canvas>
 <div class="panel">Guest: pinned / watched process VmLck (MiB)</div><canvas id="guest" width="640" height="200"></canvas>
 <div class="legend"><span style="color:#d62728">■ pinned</span><span style="color:#1f77b4">■ Mlocked</span>
  <span style="color:#ff7f0e">■ VmLck</span></div>
</div><div>
 <div class="panel">Verdicts</div><ul id="checks"></ul>
 <div class="panel">Phases and QMP events</div><ul id="events"></ul>
</div></div>
<script>
const token = new URLSearchParams(location.search).get('token');
const series = { host: [], guest: [] }; const phases = [];
let count = 0;
function draw(name) {
  const c = document.getElementById(name), g = c.getContext('2d'), pts = series[name];
  g.clearRect(0, 0, c.width, c.height);
  if (!pts.length) return;
  const tMax = Math.max(1, ...pts.map(p => p.t)), vMax = Math.max(1, ...pts.flatMap(p => [p.pinnedMiB, p.mlockedMiB, p.vmLckMiB || 0])) * 1.1;
  const x = t => 30 + (t / tMax) * (c.width - 40), y = v => c.height - 15 - (v / vMax) * (c.height - 30);
  g.strokeStyle = '#999'; g.setLineDash([3, 3]);
  for (const ph of phases) { g.beginPath(); g.moveTo(x(ph.atMs), 5); g.lineTo(x(ph.atMs), c.height - 15); g.stroke(); }
  g.setLineDash([]); g.fillStyle = '#555'; g.font = '10px sans-serif';
  g.fillText(vMax.toFixed(0) + ' MiB', 2, 12); g.fillText((tMax / 1000).toFixed(1) + ' s', c.width - 40, c.height - 2);
  for (const [key, color] of [['pinnedMiB', '#d62728'], ['mlockedMiB', '#1f77b4'], ['vmLckMiB', '#ff7f0e']]) {
    g.strokeStyle = color; g.lineWidth = 2; g.beginPath(); let started = false;
    for (const p of pts) { if (p[key] === undefined) continue; const X = x(p.t), Y = y(p[key]); started ? g.lineTo(X, Y) : g.moveTo(X, Y); started = true; }
    g.stroke();
  }
}
function item(list, cls, text) {
  const li = document.createElement('li'); li.className = cls; li.textContent = text;
  const ul = document.getElementById(list); ul.appendChild(li); ul.scrollTop = ul.scrollHeight;
}
let pending = false;
function redraw() { if (pending) return; pending = true; requestAnimationFrame(() => { pending = false; draw('host'); draw('guest'); }); }
const ws = new WebSocket('ws://' + location.host + '/ws?token=' + encodeURIComponent(token));
ws.onopen = () => { document.getElementById('conn').textContent = 'live'; };
ws.onclose = () => { document.getElementById('conn').textContent = 'closed'; };
ws.onmessage = (e) => {
  const m = JSON.parse(e.data);
  if (m.type === 'hello') document.getElementById('scenario').textContent = m.scenario + ' on ' + m.profile;
  else if (m.type === 'sample') { series[m.source].push(m); count++; document.getElementById('sample-count').textContent = count; redraw(); }
  else if (m.type === 'phase') { phases.push(m); item('events', '', (m.atMs / 1000).toFixed(2) + ' s  ' + m.name); redraw(); }
  else if (m.type === 'event') item('events', '', (m.atMs / 1000).toFixed(2) + ' s  QMP ' + m.event);
  else if (m.type === 'check') item('checks', m.status, m.status.toUpperCase() + ' ' + m.name + ': ' + m.measured);
  else if (m.type === 'done') {
    const v = document.getElementById('verdict'); v.textContent = m.passed ? 'PASS' : 'FAIL'; v.className = m.passed ? 'pass' : 'fail';
  }
};
</script></body></html>
`;
}
