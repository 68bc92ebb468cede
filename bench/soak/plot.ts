// The soak's plot: RSS and sessions over time, drawn by uPlot (a dependency
// already, for the dashboard) in a page served from 127.0.0.1 and
// photographed by headless Chromium through playwright-core. Faults are
// marked as vertical lines: kills red, drains orange, freezes grey.
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import type { FaultRecord } from './faults.js';
import type { Sample } from './sampler.js';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const WIDTH = 1200;
const HEIGHT = 520;

function page(title: string, samples: readonly Sample[], faults: readonly FaultRecord[]): string {
  const load = samples.filter((s) => s.t >= 0);
  const data = [load.map((s) => s.t / 60), load.map((s) => Math.round(s.rssMiB * 10) / 10), load.map((s) => s.sessions)];
  const marks = faults
    .filter((f) => f.kind === 'kill' || f.kind === 'drain' || f.kind === 'vanish')
    .map((f) => ({ x: f.t / 60, color: f.kind === 'kill' ? '#d62728' : f.kind === 'drain' ? '#ff7f0e' : '#999999' }));
  return `<!doctype html><html><head><meta charset="utf-8"><link rel="stylesheet" href="/uPlot.min.css">
<style>body{margin:0;font:14px sans-serif;background:#fff}#chart{padding:12px 16px;width:${WIDTH - 32}px}h1{font-size:16px;margin:0 0 4px}
.legend{color:#555;font-size:12px;margin-bottom:6px}</style></head><body><div id="chart"><h1>${title}</h1>
<div class="legend">vertical lines: backend killed (red), target drained (orange), load process frozen without a FIN (grey)</div></div>
<script src="/uPlot.iife.min.js"></script><script>
const data = ${JSON.stringify(data)};
const marks = ${JSON.stringify(marks)};
const opts = {
  width: ${WIDTH - 32}, height: ${HEIGHT - 90},
  legend: { live: false },
  // From 0: flat has to look flat, not be magnified into noise.
  scales: { x: { time: false }, mib: { range: (u, min, max) => [0, Math.ceil(max * 1.25)] }, n: { range: (u, min, max) => [0, Math.ceil(max * 1.25)] } },
  axes: [
    { label: 'minutes since the load started' },
    { scale: 'mib', label: 'gateway RSS (MiB)', stroke: '#1f77b4' },
    { scale: 'n', side: 1, label: 'sessions', stroke: '#2ca02c', grid: { show: false } },
  ],
  series: [
    {},
    { label: 'RSS (MiB)', scale: 'mib', stroke: '#1f77b4', width: 2 },
    { label: 'sessions', scale: 'n', stroke: '#2ca02c', width: 1.5 },
  ],
  hooks: { draw: [(u) => {
    const ctx = u.ctx; ctx.save(); ctx.lineWidth = 1; ctx.setLineDash([4, 4]);
    for (const m of marks) {
      const x = Math.round(u.valToPos(m.x, 'x', true)) + 0.5;
      ctx.strokeStyle = m.color; ctx.beginPath(); ctx.moveTo(x, u.bbox.top); ctx.lineTo(x, u.bbox.top + u.bbox.height); ctx.stroke();
    }
    ctx.restore();
  }] },
};
new uPlot(opts, data, document.getElementById('chart'));
window.__ready = true;
</script></body></html>`;
}

/** Renders the plot to `file`; throws when Chromium cannot run (the caller reports it and carries on). */
export async function plot(file: string, title: string, samples: readonly Sample[], faults: readonly FaultRecord[]): Promise<void> {
  const dist = fileURLToPath(new URL('../../node_modules/uplot/dist/', import.meta.url));
  const html = page(title, samples, faults);
  const server = createServer((req, res) => {
    const files: Record<string, [string, string]> = {
      '/uPlot.iife.min.js': [`${dist}uPlot.iife.min.js`, 'text/javascript'],
      '/uPlot.min.css': [`${dist}uPlot.min.css`, 'text/css'],
    };
    const f = files[req.url ?? ''];
    if (f !== undefined) {
      res.writeHead(200, { 'content-type': f[1] });
      res.end(readFileSync(f[0]));
    } else if (req.url === '/') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end(html);
    } else {
      res.writeHead(404);
      res.end();
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    timeout: 60_000,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  try {
    const p = await browser.newPage({ viewport: { width: WIDTH, height: HEIGHT } });
    await p.goto(`http://127.0.0.1:${(server.address() as AddressInfo).port}/`);
    await p.waitForFunction('window.__ready === true', undefined, { timeout: 30_000 });
    await p.locator('#chart').screenshot({ path: file });
  } finally {
    await browser.close().catch(() => {});
    server.close();
  }
}
