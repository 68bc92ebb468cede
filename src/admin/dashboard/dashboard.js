// The wsgate dashboard: plain browser JavaScript, no build step, no requests
// beyond the admin listener that serves it. Stats arrive as server-sent events
// from GET /api/stats/stream, read with fetch() (EventSource cannot send the
// Authorization header); rates and handshake quantiles are computed here from
// the difference of two snapshots' cumulative totals, as Prometheus's rate()
// and histogram_quantile() do. uPlot (vendor/uPlot.iife.min.js) draws the charts.
/* global uPlot */

const HISTORY_SECONDS = 300;
const QUANTILE_WINDOW_MS = 10_000;
const STALL_MS = 5_000;
const TOKEN_KEY = 'wsgate.adminToken';
const PALETTE = ['#2563eb', '#16a34a', '#dc2626', '#d97706', '#7c3aed', '#0891b2', '#db2777', '#4b5563', '#65a30d', '#9333ea'];

/** Y-axis steps for bytes: 1, 2, 5, 10, … of B, KiB, MiB, GiB, so that ticks fall on round binary numbers. */
const BINARY_STEPS = [1, 1024, 1024 ** 2, 1024 ** 3].flatMap((unit) => [1, 2, 5, 10, 20, 50, 100, 200, 500].map((m) => m * unit));

const $ = (id) => document.getElementById(id);

// ---- The admin API, with the bearer token asked for once on a 401 ----

class Unauthorized extends Error {}

let token = sessionStorage.getItem(TOKEN_KEY) ?? '';
let tokenWaiters = [];

async function api(path, init = {}) {
  const headers = new Headers(init.headers);
  if (token !== '') headers.set('authorization', `Bearer ${token}`);
  const res = await fetch(path, { ...init, headers, cache: 'no-store' });
  if (res.status === 401) {
    await res.text().catch(() => ''); // read to the end: the request is complete, not aborted
    throw new Unauthorized(token === '' ? '' : 'That token was refused.');
  }
  if (!res.ok) {
    const body = await res.json().catch(() => ({}));
    throw new Error(`${init.method ?? 'GET'} ${path}: ${res.status} ${body.error ?? res.statusText}`);
  }
  return res;
}

/** Shows the token form (once, however many requests are waiting) and resolves when a token is entered. */
function tokenEntered(err) {
  const form = $('token-form');
  if (form.hidden) {
    form.hidden = false;
    $('token-error').textContent = err.message;
    $('token').focus();
  }
  return new Promise((resolve) => tokenWaiters.push(resolve));
}

$('token-form').addEventListener('submit', (event) => {
  event.preventDefault();
  token = $('token').value.trim();
  sessionStorage.setItem(TOKEN_KEY, token);
  $('token').value = '';
  $('token-form').hidden = true;
  const waiters = tokenWaiters;
  tokenWaiters = [];
  for (const resolve of waiters) resolve();
});

let noticeTimer;

/** A line in the header saying what an action did, for a few seconds. */
function notice(text) {
  $('notice').textContent = text;
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => ($('notice').textContent = ''), 10_000);
}

function setStatus(state, text) {
  $('status').dataset.state = state;
  $('status').textContent = text;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// ---- The stats feed: SSE over fetch, reconnecting with a backoff ----

async function readStream() {
  const abort = new AbortController();
  let watchdog = setTimeout(() => abort.abort(), STALL_MS);
  try {
    const res = await api('/api/stats/stream', { signal: abort.signal, headers: { accept: 'text/event-stream' } });
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) throw new Error('the stats stream ended');
      buffer = (buffer + value).replace(/\r\n/g, '\n');
      let end;
      while ((end = buffer.indexOf('\n\n')) !== -1) {
        const event = parseEvent(buffer.slice(0, end));
        buffer = buffer.slice(end + 2);
        if (event.data === '') continue;
        clearTimeout(watchdog);
        watchdog = setTimeout(() => abort.abort(), STALL_MS);
        if (event.type === 'error') notice(`stats: ${JSON.parse(event.data).error}`);
        else onSnapshot(JSON.parse(event.data));
      }
    }
  } finally {
    clearTimeout(watchdog);
    abort.abort();
  }
}

/** One server-sent event's type and data (its data lines joined). */
function parseEvent(block) {
  let type = 'message';
  const data = [];
  for (const line of block.split('\n')) {
    const colon = line.indexOf(':');
    const field = colon === -1 ? line : line.slice(0, colon);
    const value = colon === -1 ? '' : line.slice(colon + 1).replace(/^ /, '');
    if (field === 'event') type = value;
    else if (field === 'data') data.push(value);
  }
  return { type, data: data.join('\n') };
}

async function followStats() {
  let backoff = 1000;
  for (;;) {
    const before = received;
    try {
      await readStream();
    } catch (err) {
      if (err instanceof Unauthorized) {
        setStatus('error', 'token needed');
        await tokenEntered(err);
        continue;
      }
      if (received > before) backoff = 1000;
      setStatus('error', `reconnecting in ${Math.round(backoff / 1000)} s`);
      await sleep(backoff);
      backoff = Math.min(backoff * 2, 15_000);
    }
  }
}

// ---- Snapshots to history: rates, quantiles ----

let received = 0;
let previous;
let latest;
/** Recent snapshots, for the quantiles' window. */
let recent = [];
/** One point a snapshot: { t (s), active, handshakes: {outcome: /s}, messages, bytes, p50, p99, closes: {code: /s} }. */
let history = [];

const rate = (now, before, dt) => Math.max(0, now - before) / dt;

function ratesOf(now, before, dt) {
  const out = {};
  for (const key of Object.keys(now)) out[key] = rate(now[key], before?.[key] ?? 0, dt);
  return out;
}

/** histogram_quantile(q, increase over the window) from two snapshots' cumulative buckets; null without data. */
function quantile(q, now, before) {
  const bounds = now.buckets.map((b) => (typeof b === 'number' ? b : Infinity));
  const counts = now.counts.map((c, i) => Math.max(0, c - (before?.counts[i] ?? 0)));
  if (counts.length > bounds.length) bounds.push(Infinity);
  const total = counts[counts.length - 1];
  if (!(total > 0)) return null;
  const rank = q * total;
  let i = counts.findIndex((c) => c >= rank);
  if (i === -1) i = counts.length - 1;
  if (bounds[i] === Infinity) return i > 0 ? bounds[i - 1] : null;
  const lower = i === 0 ? 0 : bounds[i - 1];
  const below = i === 0 ? 0 : counts[i - 1];
  const inBucket = counts[i] - below;
  return inBucket > 0 ? lower + (bounds[i] - lower) * ((rank - below) / inBucket) : bounds[i];
}

function onSnapshot(snap) {
  received++;
  if (previous !== undefined && snap.uptimeSeconds < previous.uptimeSeconds) {
    history = []; // the gateway restarted: its counters began again
    recent = [];
    previous = undefined;
  }
  recent.push(snap);
  while (recent.length > 2 && recent[1].time <= snap.time - QUANTILE_WINDOW_MS) recent.shift();
  const base = recent[0] === snap ? undefined : recent[0];
  const point = {
    t: snap.time / 1000,
    active: snap.connections.active,
    p50: quantile(0.5, snap.handshakeDuration, base?.handshakeDuration),
    p99: quantile(0.99, snap.handshakeDuration, base?.handshakeDuration),
  };
  const dt = previous === undefined ? 0 : (snap.time - previous.time) / 1000;
  if (dt > 0) {
    Object.assign(point, {
      handshakes: ratesOf(snap.handshakes, previous.handshakes, dt),
      messages: ratesOf(snap.messages, previous.messages, dt),
      bytes: ratesOf(snap.bytes, previous.bytes, dt),
      closes: ratesOf(snap.closes, previous.closes, dt),
    });
  }
  history.push(point);
  if (history.length > HISTORY_SECONDS) history.shift();
  previous = snap;
  latest = { snap, point, base };
  setStatus('live', 'live');
  render();
}

// ---- Formatting ----

const number = new Intl.NumberFormat(undefined, { maximumFractionDigits: 1 });
const fmt = (n) => (n === undefined || n === null ? '–' : number.format(n));

function fmtBytes(n) {
  if (n === undefined || n === null) return '–';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${number.format(n)} ${units[i]}`;
}

const fmtMs = (seconds) => (seconds === null || seconds === undefined ? '–' : `${number.format(seconds * 1000)} ms`);

function fmtAge(seconds) {
  const s = Math.floor(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
}

const sum = (obj) => Object.values(obj ?? {}).reduce((a, b) => a + b, 0);

// ---- Rendering: tiles, charts, tables ----

function render() {
  const { snap, point } = latest;
  $('meta').textContent =
    `up ${fmtAge(snap.uptimeSeconds)} · ${snap.workers} worker${snap.workers === 1 ? '' : 's'} · ` +
    `${fmt(snap.connections.total)} connections since start` +
    (snap.metrics ? '' : ' · admin.metrics is false: no counting');
  $('active').textContent = fmt(snap.connections.active);
  const accepted = point.handshakes?.accepted;
  const rejected = point.handshakes === undefined ? undefined : sum(point.handshakes) - accepted;
  $('handshake-rate').textContent = fmt(point.handshakes && sum(point.handshakes));
  $('handshake-split').textContent = `${fmt(accepted)} accepted · ${fmt(rejected)} rejected`;
  $('message-rate').textContent = fmt(point.messages && sum(point.messages));
  $('message-split').textContent = `↑ ${fmt(point.messages?.upstream)} · ↓ ${fmt(point.messages?.downstream)}`;
  $('byte-rate').textContent = fmtBytes(point.bytes && sum(point.bytes));
  $('byte-split').textContent = `↑ ${fmtBytes(point.bytes?.upstream)} · ↓ ${fmtBytes(point.bytes?.downstream)}`;
  $('latency').textContent = point.p50 === null ? '–' : `${fmtMs(point.p50)} / ${fmtMs(point.p99)}`;
  for (const chart of charts) chart.update();
  renderRejections();
  renderUpstreams(snap.upstreams);
}

/** A uPlot chart over `history`, rebuilt when its set of series changes (a new outcome or close code). */
class Chart {
  constructor(el, series, format = fmt) {
    this.el = el;
    this.series = series; // () => [{ label, value(point), color? }]
    this.format = format;
    this.plot = undefined;
    this.signature = '';
    new ResizeObserver(() => this.plot?.setSize(this.size())).observe(el);
  }

  size() {
    return { width: Math.max(200, this.el.clientWidth), height: 120 };
  }

  update() {
    const series = this.series();
    const data = [history.map((p) => p.t), ...series.map((s) => history.map((p) => s.value(p) ?? null))];
    const signature = series.map((s) => s.label).join('\n');
    if (this.plot !== undefined && signature === this.signature) {
      this.plot.setData(data);
      // Without the pointer on the chart, the legend shows the latest values.
      if (!(this.plot.cursor.left >= 0)) this.plot.setLegend({ idx: data[0].length - 1 });
      return;
    }
    this.plot?.destroy();
    this.signature = signature;
    const format = this.format;
    this.plot = new uPlot(
      {
        ...this.size(),
        cursor: { drag: { x: false, y: false } },
        scales: { y: { range: (_u, _min, max) => [0, max > 0 ? max * 1.1 : 1] } },
        axes: [
          { stroke: '#667085', grid: { stroke: '#eef0f3' } },
          {
            stroke: '#667085',
            grid: { stroke: '#eef0f3' },
            size: format === fmtBytes ? 76 : 56,
            values: (_u, ticks) => ticks.map(format),
            ...(format === fmtBytes ? { incrs: BINARY_STEPS } : {}),
          },
        ],
        series: [
          {},
          ...series.map((s, i) => ({
            label: s.label,
            stroke: s.color ?? PALETTE[i % PALETTE.length],
            width: 1.5,
            points: { show: false },
            value: (_u, v) => (v === null ? '–' : format(v)),
          })),
        ],
      },
      data,
      this.el,
    );
  }
}

/** The keys of `field` that were ever non-zero in the history, `first` first. */
function keysSeen(field, first = []) {
  const seen = new Set(first);
  for (const p of history) for (const [k, v] of Object.entries(p[field] ?? {})) if (v > 0) seen.add(k);
  return [...seen];
}

const charts = [
  new Chart($('chart-active'), () => [{ label: 'active', value: (p) => p.active }]),
  new Chart($('chart-handshakes'), () =>
    keysSeen('handshakes', ['accepted']).map((k, i) => ({
      label: k,
      value: (p) => p.handshakes?.[k],
      color: k === 'accepted' ? '#16a34a' : PALETTE[(i + 1) % PALETTE.length],
    })),
  ),
  new Chart($('chart-messages'), () => [
    { label: '↑ upstream', value: (p) => p.messages?.upstream },
    { label: '↓ downstream', value: (p) => p.messages?.downstream },
  ]),
  new Chart(
    $('chart-bytes'),
    () => [
      { label: '↑ upstream', value: (p) => p.bytes?.upstream },
      { label: '↓ downstream', value: (p) => p.bytes?.downstream },
    ],
    fmtBytes,
  ),
  new Chart($('chart-latency'), () => [
    { label: 'p50', value: (p) => (p.p50 === null ? null : p.p50 * 1000) },
    { label: 'p99', value: (p) => (p.p99 === null ? null : p.p99 * 1000) },
  ]),
  new Chart($('chart-closes'), () => keysSeen('closes').map((code) => ({ label: code, value: (p) => p.closes?.[code] }))),
];

/** Keeps one row per item (by key) in `tbody`, in order, reusing rows so that a click never lands on a replaced button. */
function syncRows(tbody, items, key, create, update) {
  const old = new Map([...tbody.rows].map((row) => [row.dataset.key, row]));
  let at = tbody.firstElementChild;
  for (const item of items) {
    const k = key(item);
    let row = old.get(k);
    if (row === undefined) {
      row = create(item);
      row.dataset.key = k;
    }
    old.delete(k);
    update(row, item);
    if (row !== at) tbody.insertBefore(row, at);
    else at = at.nextElementSibling;
  }
  for (const row of old.values()) row.remove();
}

function makeRow(cells, className = '') {
  const row = document.createElement('tr');
  row.className = className;
  for (const cls of cells) {
    const td = row.insertCell();
    td.className = cls;
  }
  return row;
}

function setCell(row, i, text, title) {
  const cell = row.cells[i];
  if (cell.textContent !== text) cell.textContent = text;
  if (title !== undefined) cell.title = title;
}

function setBadge(row, i, text, kind, title = '') {
  const cell = row.cells[i];
  let badge = cell.firstElementChild;
  if (badge === null) badge = cell.appendChild(document.createElement('span'));
  badge.className = `badge ${kind}`;
  badge.textContent = text;
  badge.title = title;
}

function setButton(row, i, label, action, className = '') {
  const cell = row.cells[i];
  let button = cell.firstElementChild;
  if (button === null) button = cell.appendChild(document.createElement('button'));
  button.type = 'button';
  button.className = className;
  button.dataset.action = action;
  if (button.textContent !== label) button.textContent = label;
}

function renderRejections() {
  const { snap, base } = latest;
  const span = base === undefined ? 0 : (snap.time - base.time) / 1000;
  // Every outcome but accepted is a rejection; those that happened, most frequent first.
  const reasons = Object.keys(snap.handshakes)
    .filter((k) => k !== 'accepted' && snap.handshakes[k] > 0)
    .sort((x, y) => snap.handshakes[y] - snap.handshakes[x]);
  $('no-rejections').hidden = reasons.length > 0;
  syncRows(
    $('rejections').tBodies[0],
    reasons,
    (r) => r,
    () => makeRow(['', 'num', 'num']),
    (row, r) => {
      const total = snap.handshakes[r];
      const recentCount = base === undefined ? undefined : Math.max(0, total - (base.handshakes[r] ?? 0));
      setCell(row, 0, r.replaceAll('_', ' '));
      setCell(row, 1, fmt(recentCount), span > 0 ? `over the last ${Math.round(span)} s` : '');
      setCell(row, 2, fmt(total));
    },
  );
}

function targetState(t) {
  if (t.removed) return ['removed', 'warn'];
  if (t.drained) return [t.drainPending > 0 ? `draining · ${t.drainPending} to close` : 'draining', 'warn'];
  if (t.slowStart !== undefined && t.slowStart !== null) return [`slow start ${Math.round(t.slowStart * 100)}%`, 'warn'];
  return ['active', 'ok'];
}

function renderUpstreams(upstreams) {
  const rows = [];
  for (const u of upstreams) {
    rows.push({ kind: 'upstream', key: `u:${u.name}`, u });
    for (const t of u.targets) rows.push({ kind: 'target', key: `t:${t.id}`, u, t });
    for (const t of u.removed) rows.push({ kind: 'removed', key: `r:${t.id}`, u, t });
  }
  syncRows(
    $('upstreams').tBodies[0],
    rows,
    (r) => r.key,
    (r) => makeRow(['', '', '', 'num', ''], r.kind === 'upstream' ? 'upstream' : 'target'),
    (row, r) => {
      if (r.kind === 'upstream') {
        setCell(row, 0, r.u.name);
        setCell(row, 1, `${r.u.available}/${r.u.targets.length} available`);
        setCell(row, 2, `${r.u.balance}${r.u.healthCheck ? ` · ${r.u.healthCheck} checks` : ''}`);
        setCell(row, 3, fmt(r.u.targets.reduce((n, t) => n + t.activeConnections, 0)));
        return;
      }
      const t = r.t;
      setCell(row, 0, r.kind === 'target' ? t.url : t.id, t.id);
      const check = t.lastCheck === undefined ? '' : `last check ${t.lastCheck.at}: ${t.lastCheck.ok ? 'ok' : (t.lastCheck.reason ?? 'failed')}`;
      if (t.ejected) setBadge(row, 1, 'ejected', 'bad', `until ${t.ejectedUntil}; ${t.consecutiveFailures} failures in a row`);
      else if (!t.healthy) setBadge(row, 1, 'unhealthy', 'bad', check);
      else setBadge(row, 1, 'healthy', 'ok', check);
      const [state, kind] = targetState(t);
      setBadge(row, 2, state, kind);
      setCell(row, 3, fmt(t.activeConnections));
      if (r.kind === 'target') {
        setButton(row, 4, t.drained ? 'Undrain' : 'Drain', t.drained ? 'undrain' : 'drain');
        row.dataset.upstream = r.u.name;
        row.dataset.index = String(t.index);
      }
    },
  );
}

$('upstreams').addEventListener('click', (event) => {
  const button = event.target.closest('button[data-action]');
  if (button === null) return;
  const row = button.closest('tr');
  const action = button.dataset.action;
  void act(button, `/api/upstreams/${encodeURIComponent(row.dataset.upstream)}/targets/${row.dataset.index}/${action}`, { method: 'POST' }, async (res) => {
    const { target } = await res.json();
    notice(`${target.id}: ${action === 'drain' ? 'draining' : 'taking connections again'}`);
    const u = latest?.snap.upstreams.find((x) => x.name === row.dataset.upstream);
    if (u !== undefined) {
      u.targets = u.targets.map((t) => (t.index === target.index ? target : t));
      renderUpstreams(latest.snap.upstreams);
    }
  });
});

/** Runs an admin action from a button: disabled while it runs, asking for the token on a 401. */
async function act(button, path, init, done) {
  button.disabled = true;
  try {
    for (;;) {
      try {
        await done(await api(path, init));
        return;
      } catch (err) {
        if (!(err instanceof Unauthorized)) throw err;
        await tokenEntered(err);
      }
    }
  } catch (err) {
    notice(err.message);
  } finally {
    button.disabled = false;
  }
}

// ---- The connection list, polled each second ----

async function followConnections() {
  for (;;) {
    try {
      const res = await api('/api/connections?limit=100');
      renderConnections(await res.json());
    } catch (err) {
      if (err instanceof Unauthorized) {
        await tokenEntered(err);
        continue;
      }
      $('connection-count').textContent = `(unavailable: ${err.message})`;
    }
    await sleep(1000);
  }
}

function renderConnections(page) {
  const shown = page.connections.length;
  $('no-connections').hidden = shown > 0;
  $('connection-count').textContent = shown < page.total ? `${fmt(shown)} of ${fmt(page.total)}` : `${fmt(page.total)}`;
  syncRows(
    $('connections').tBodies[0],
    page.connections,
    (c) => c.id,
    () => makeRow(['', '', '', 'url', 'num', 'num', 'num', '']),
    (row, c) => {
      setCell(row, 0, c.id);
      setCell(row, 1, c.client);
      setCell(row, 2, c.route);
      setCell(row, 3, `${c.upstream} · ${c.target}`, `${c.relay} relay over ${c.protocol}${c.subprotocol ? `, subprotocol ${c.subprotocol}` : ''}`);
      setCell(row, 4, fmtAge(c.ageSeconds), c.startedAt);
      setCell(row, 5, c.relay === 'tunnel' ? '–' : `${fmt(c.messages.upstream)} / ${fmt(c.messages.downstream)}`);
      setCell(row, 6, `${fmtBytes(c.bytes.upstream)} / ${fmtBytes(c.bytes.downstream)}`);
      setButton(row, 7, 'Close', 'close', 'danger');
    },
  );
}

$('connections').addEventListener('click', (event) => {
  const button = event.target.closest('button[data-action="close"]');
  if (button === null) return;
  const row = button.closest('tr');
  const id = row.dataset.key;
  void act(button, `/api/connections/${encodeURIComponent(id)}`, { method: 'DELETE' }, () => {
    notice(`connection ${id} closed`);
    row.remove();
  });
});

void followStats();
void followConnections();
