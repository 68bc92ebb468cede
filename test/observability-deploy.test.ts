// The Grafana dashboard, the Prometheus files and docs/observability.md against
// the one table of metric names (src/observability/metric-table.ts): every
// series a PromQL expression uses is one wsgate (or prom-client's default
// Node.js collectors) serves, with labels that series has and `outcome`
// values that exist; the dashboard and the docs cover every metric; the
// files have the structure Grafana and Prometheus expect. When promtool is
// installed, it checks the rules and the scrape config too (CI does without).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse, parseAllDocuments } from 'yaml';
import { HANDSHAKE_OUTCOMES, METRICS, type MetricSpec } from '../src/observability/metric-table.js';
import { findBinary } from './process-helpers.js';

const ROOT = join(import.meta.dirname, '..');
const DASHBOARD = 'deploy/grafana/wsgate-dashboard.json';
const ALERTS = 'deploy/prometheus/alerts.yaml';
const PROMETHEUS = 'deploy/prometheus/prometheus.yml';
const DOC = 'docs/observability.md';

function text(path: string): string {
  return readFileSync(join(ROOT, path), 'utf8');
}

/** Labels Prometheus adds to every scraped series. */
const TARGET_LABELS = ['instance', 'job'];

/**
 * The series of prom-client's default Node.js collectors that the dashboard
 * and the alerts may use (wsgate registers the defaults), with their labels.
 */
const NODE_SERIES: readonly { name: string; type: MetricSpec['type']; labels: readonly string[] }[] = [
  { name: 'process_cpu_seconds_total', type: 'counter', labels: [] },
  { name: 'process_resident_memory_bytes', type: 'gauge', labels: [] },
  { name: 'nodejs_eventloop_lag_p99_seconds', type: 'gauge', labels: [] },
  { name: 'nodejs_heap_size_used_bytes', type: 'gauge', labels: [] },
  { name: 'nodejs_gc_duration_seconds', type: 'histogram', labels: ['kind'] },
];

interface Series {
  /** The metric it belongs to: a METRICS name, a Node default or `up`. */
  readonly metric: string;
  readonly labels: ReadonlySet<string>;
  /** For the labels with a closed set of values, the text that documents them. */
  readonly help: string;
}

/** Every series name a query may use, with the labels it carries. */
const SERIES = new Map<string, Series>();
function addSeries(name: string, type: MetricSpec['type'], labels: readonly string[], help: string): void {
  const names = type === 'histogram' ? [`${name}_bucket`, `${name}_sum`, `${name}_count`] : [name];
  for (const n of names) {
    const own = n.endsWith('_bucket') ? [...labels, 'le'] : labels;
    SERIES.set(n, { metric: name, labels: new Set([...own, ...TARGET_LABELS]), help });
  }
}
for (const spec of Object.values(METRICS) as MetricSpec[]) addSeries(spec.name, spec.type, spec.labels, spec.help);
for (const s of NODE_SERIES) addSeries(s.name, s.type, s.labels, '');
addSeries('up', 'gauge', [], '');

/** Label names whose values form a closed set: the values used must be documented. */
function checkValue(where: string, series: string, label: string, op: string, value: string): void {
  const spec = SERIES.get(series);
  if (spec === undefined) return;
  const values = op === '=~' || op === '!~' ? value.split('|') : [value];
  if (label === 'outcome') {
    for (const v of values) assert.ok((HANDSHAKE_OUTCOMES as readonly string[]).includes(v), `${where}: outcome "${v}" is not in HANDSHAKE_OUTCOMES`);
  } else if (label === 'direction' || label === 'initiator' || label === 'result') {
    for (const v of values) assert.match(spec.help, new RegExp(`\\b${v}\\b`), `${where}: ${label}="${v}" is not a value METRICS documents for ${spec.metric}`);
  }
}

const STRING = /"(?:[^"\\]|\\.)*"/g;
/** The identifiers that name a series (the prefixes wsgate's and Node's series have, and `up`). */
const SERIES_NAME = /\b(wsgate_[a-z0-9_]+|process_[a-z0-9_]+|nodejs_[a-z0-9_]+|up)\b/g;
const SELECTOR = /\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{([^}]*)\}/g;
const MATCHER = /([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"/g;
const LABEL_LIST = /\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)/g;

/**
 * Checks one PromQL expression against SERIES and returns the labels its
 * series carry (for checking legends and annotations).
 */
function checkExpr(where: string, expr: string): Set<string> {
  assert.ok(expr.trim() !== '', `${where}: empty expr`);
  const bare = expr.replace(STRING, '""');
  const used = new Set<string>();
  for (const m of bare.matchAll(SERIES_NAME)) used.add(m[1]!);
  assert.ok(used.size > 0, `${where}: uses no wsgate or Node.js series: ${expr}`);
  for (const name of used)
    assert.ok(
      SERIES.has(name),
      `${where}: ${name} is not a series wsgate serves (METRICS, a histogram's _bucket/_sum/_count, or ${NODE_SERIES.map((s) => s.name).join(', ')})`,
    );

  const labels = new Set<string>();
  for (const name of used) for (const l of SERIES.get(name)!.labels) labels.add(l);

  // metric{label op "value", ...}: the label belongs to that very series.
  for (const m of expr.matchAll(SELECTOR)) {
    const name = m[1]!;
    const series = SERIES.get(name);
    assert.ok(series, `${where}: selector on ${name}, which is not a series wsgate serves`);
    const body = m[2]!;
    const matchers = [...body.matchAll(MATCHER)];
    assert.equal(body.replace(MATCHER, '').replace(/[\s,]/g, ''), '', `${where}: cannot read the matchers of ${name}{${body}}`);
    for (const [, label, op, value] of matchers) {
      assert.ok(series.labels.has(label!), `${where}: ${name} has no label ${label} (it has ${[...series.labels].join(', ')})`);
      checkValue(where, name, label!, op!, value!);
    }
  }

  // by (...), without (...), on (...), ignoring (...), group_left (...): labels the expression's series have.
  for (const m of bare.matchAll(LABEL_LIST)) {
    for (const label of m[2]!
      .split(',')
      .map((l) => l.trim())
      .filter((l) => l !== '')) {
      assert.ok(labels.has(label), `${where}: ${m[1]} (${m[2]}): no series in the expression has the label ${label}: ${expr}`);
    }
  }
  return labels;
}

/** The {{label}} placeholders of a legend, or the $labels.X of an alert annotation. */
function checkPlaceholders(where: string, template: string, labels: ReadonlySet<string>, re: RegExp): void {
  for (const m of template.matchAll(re)) assert.ok(labels.has(m[1]!), `${where}: "${template}" shows label ${m[1]}, which its expression's series do not have`);
}

interface GridPos {
  h: number;
  w: number;
  x: number;
  y: number;
}
interface Target {
  refId?: string;
  expr?: string;
  legendFormat?: string;
  datasource?: { type?: string; uid?: string };
}
interface Panel {
  id?: number;
  type?: string;
  title?: string;
  gridPos?: GridPos;
  datasource?: { type?: string; uid?: string };
  targets?: Target[];
  panels?: Panel[];
}
interface Variable {
  name: string;
  type: string;
  query?: string | { query?: string };
  definition?: string;
  datasource?: { type?: string; uid?: string };
}
interface Dashboard {
  __inputs?: { name: string; type: string; pluginId: string }[];
  schemaVersion?: number;
  title?: string;
  uid?: string;
  panels?: Panel[];
  templating?: { list?: Variable[] };
}

function dashboard(): Dashboard {
  return JSON.parse(text(DASHBOARD)) as Dashboard;
}

/** Every panel, rows' nested panels included. */
function allPanels(d: Dashboard): Panel[] {
  const out: Panel[] = [];
  for (const p of d.panels ?? []) out.push(p, ...(p.panels ?? []));
  return out;
}

function usesDatasourceVariable(where: string, ds: { type?: string; uid?: string } | undefined): void {
  assert.equal(ds?.type, 'prometheus', `${where}: datasource type`);
  assert.equal(ds?.uid, '${datasource}', `${where}: the datasource is the templated \${datasource}`);
}

void test('the Grafana dashboard: structure, data source input and template variables', () => {
  const d = dashboard();
  assert.equal(typeof d.title, 'string');
  assert.equal(typeof d.uid, 'string');
  assert.ok((d.schemaVersion ?? 0) >= 36, `schemaVersion ${d.schemaVersion}`);
  assert.ok(
    d.__inputs?.some((i) => i.name === 'DS_PROMETHEUS' && i.type === 'datasource' && i.pluginId === 'prometheus'),
    'a DS_PROMETHEUS data source input for imports',
  );

  const vars = d.templating?.list ?? [];
  const ds = vars.find((v) => v.name === 'datasource');
  assert.ok(ds, 'a datasource variable');
  assert.equal(ds.type, 'datasource');
  assert.equal(ds.query, 'prometheus');
  for (const name of ['instance', 'route']) {
    const v = vars.find((x) => x.name === name);
    assert.ok(v, `a template variable ${name}`);
    assert.equal(v.type, 'query');
    usesDatasourceVariable(`variable ${name}`, v.datasource);
    const q = typeof v.query === 'string' ? v.query : (v.query?.query ?? v.definition ?? '');
    const m = /^label_values\(\s*(.+?)\s*,\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)$/.exec(q);
    assert.ok(m, `variable ${name}: label_values(series, label), not ${q}`);
    assert.equal(m[2], name, `variable ${name} lists the values of the label ${name}`);
    const labels = checkExpr(`variable ${name}`, m[1]!);
    assert.ok(labels.has(name), `variable ${name}: ${m[1]} has no label ${name}`);
  }

  const panels = allPanels(d);
  assert.ok(panels.length > 20, `only ${panels.length} panels`);
  const ids = panels.map((p) => p.id);
  assert.ok(
    ids.every((id) => Number.isInteger(id)),
    'every panel has an integer id',
  );
  assert.equal(new Set(ids).size, ids.length, 'panel ids are unique');

  const boxes: (GridPos & { title: string })[] = [];
  for (const p of panels) {
    const where = `panel ${p.id} "${p.title}"`;
    assert.ok(typeof p.title === 'string' && p.title !== '', `panel ${p.id} has a title`);
    const g = p.gridPos;
    assert.ok(g && g.w > 0 && g.h > 0 && g.x >= 0 && g.y >= 0 && g.x + g.w <= 24, `${where}: gridPos within the 24 columns`);
    for (const b of boxes) {
      const apart = g.x + g.w <= b.x || b.x + b.w <= g.x || g.y + g.h <= b.y || b.y + b.h <= g.y;
      assert.ok(apart, `${where} overlaps "${b.title}"`);
    }
    boxes.push({ ...g, title: p.title });
    if (p.type === 'row') continue;
    usesDatasourceVariable(where, p.datasource);
    assert.ok(Array.isArray(p.targets) && p.targets.length > 0, `${where} has targets`);
    const refIds = p.targets.map((t) => t.refId);
    assert.equal(new Set(refIds).size, refIds.length, `${where}: unique refIds`);
    for (const t of p.targets) {
      assert.ok(typeof t.expr === 'string' && t.expr.trim() !== '', `${where}: target ${t.refId} has an expr`);
      usesDatasourceVariable(`${where} target ${t.refId}`, t.datasource);
    }
  }
});

void test('the Grafana dashboard uses only series and labels wsgate serves, and shows every metric', () => {
  const used = new Set<string>();
  for (const p of allPanels(dashboard())) {
    for (const t of p.targets ?? []) {
      const where = `${DASHBOARD}: panel "${p.title}" ${t.refId}`;
      const labels = checkExpr(where, t.expr ?? '');
      checkPlaceholders(where, t.legendFormat ?? '', labels, /\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}/g);
      for (const m of (t.expr ?? '').replace(STRING, '""').matchAll(SERIES_NAME)) used.add(SERIES.get(m[1]!)!.metric);
      // A route filter on a panel whose series have no route label would select nothing.
      if ((t.expr ?? '').includes('$route')) assert.ok(labels.has('route'), `${where}: filters on $route without a route label`);
    }
  }
  for (const spec of Object.values(METRICS) as MetricSpec[]) assert.ok(used.has(spec.name), `no panel shows ${spec.name}`);
  for (const s of NODE_SERIES) assert.ok(used.has(s.name), `no panel shows ${s.name} (drop it from NODE_SERIES if it is not needed)`);
});

interface Rule {
  alert?: unknown;
  record?: unknown;
  expr?: unknown;
  for?: unknown;
  labels?: { severity?: unknown };
  annotations?: { summary?: unknown; description?: unknown };
}

function rules(): { group: string; rule: Rule }[] {
  const doc = parse(text(ALERTS)) as { groups?: { name?: unknown; rules?: Rule[] }[] };
  assert.ok(Array.isArray(doc.groups) && doc.groups.length > 0, `${ALERTS}: groups`);
  const out: { group: string; rule: Rule }[] = [];
  const groupNames = new Set<unknown>();
  for (const g of doc.groups) {
    assert.ok(typeof g.name === 'string' && g.name !== '', `${ALERTS}: every group has a name`);
    assert.ok(!groupNames.has(g.name), `${ALERTS}: group ${g.name} twice`);
    groupNames.add(g.name);
    assert.ok(Array.isArray(g.rules) && g.rules.length > 0, `${ALERTS}: group ${g.name} has rules`);
    for (const rule of g.rules) out.push({ group: g.name, rule });
  }
  return out;
}

void test('the alerting rules: structure', () => {
  const names = new Set<string>();
  for (const { group, rule } of rules()) {
    const where = `${ALERTS}: group ${group}, ${String(rule.alert)}`;
    assert.ok(typeof rule.alert === 'string' && /^[A-Z][A-Za-z0-9]+$/.test(rule.alert), `${where}: alert is a CamelCase name`);
    assert.ok(!names.has(rule.alert), `${where}: alert name used twice`);
    names.add(rule.alert);
    assert.ok(typeof rule.expr === 'string' && rule.expr.trim() !== '', `${where}: expr`);
    assert.ok(typeof rule.for === 'string' && /^(\d+(ms|s|m|h|d|w|y))+$/.test(rule.for), `${where}: for is a duration`);
    assert.ok(['critical', 'warning', 'info'].includes(rule.labels?.severity as string), `${where}: labels.severity is critical, warning or info`);
    assert.ok(typeof rule.annotations?.summary === 'string' && rule.annotations.summary !== '', `${where}: annotations.summary`);
    assert.ok(typeof rule.annotations?.description === 'string' && rule.annotations.description !== '', `${where}: annotations.description`);
  }
  for (const expected of ['WsgateDown', 'WsgateTargetDown', 'WsgateUpstreamAllTargetsDown', 'WsgateConfigReloadFailed', 'WsgateEventLoopLagHigh']) {
    assert.ok(names.has(expected), `an alert ${expected}`);
  }
});

void test('the alerting rules use only series and labels wsgate serves', () => {
  const up = /\bup\{job="([^"]+)"\}/;
  const jobs = new Set<string>();
  for (const { rule } of rules()) {
    const where = `${ALERTS}: ${String(rule.alert)}`;
    const expr = rule.expr as string;
    const labels = checkExpr(where, expr);
    for (const a of [rule.annotations?.summary, rule.annotations?.description]) {
      checkPlaceholders(where, a as string, labels, /\$labels\.([a-zA-Z_][a-zA-Z0-9_]*)/g);
    }
    const m = up.exec(expr);
    if (m) jobs.add(m[1]!);
  }
  // The job the alerts expect is the one the example scrape config defines.
  const config = parse(text(PROMETHEUS)) as { scrape_configs?: { job_name?: string }[] };
  for (const job of jobs)
    assert.ok(
      config.scrape_configs?.some((s) => s.job_name === job),
      `${PROMETHEUS} has no job ${job}, which ${ALERTS} expects`,
    );
});

void test('the example Prometheus config scrapes the admin listener and loads the rules', () => {
  for (const file of [ALERTS, PROMETHEUS]) {
    for (const doc of parseAllDocuments(text(file))) {
      assert.deepEqual(
        [...doc.errors, ...doc.warnings].map((e) => e.message),
        [],
        file,
      );
    }
  }
  const config = parse(text(PROMETHEUS)) as {
    rule_files?: string[];
    scrape_configs?: { job_name?: string; metrics_path?: string; static_configs?: { targets?: string[] }[] }[];
  };
  assert.ok(config.rule_files?.includes('alerts.yaml'), 'rule_files lists alerts.yaml (beside prometheus.yml)');
  const job = config.scrape_configs?.find((s) => s.job_name === 'wsgate');
  assert.ok(job, 'a scrape job "wsgate"');
  assert.equal(job.metrics_path, '/metrics');
  assert.ok(
    job.static_configs?.some((s) => s.targets?.includes('127.0.0.1:9901')),
    'the admin listener at its default address',
  );
  assert.match(text(PROMETHEUS), /kubernetes_sd_configs/, 'a note on Kubernetes pod discovery');
});

void test('docs/observability.md documents every series and outcome, and the files under deploy/', () => {
  const doc = text(DOC);
  for (const spec of Object.values(METRICS) as MetricSpec[]) {
    assert.ok(doc.includes(`\`${spec.name}\``), `${DOC} does not document ${spec.name}`);
    for (const label of spec.labels) assert.ok(doc.includes(`\`${label}\``), `${DOC} does not mention the label ${label} of ${spec.name}`);
  }
  for (const outcome of HANDSHAKE_OUTCOMES) assert.ok(doc.includes(`\`${outcome}\``), `${DOC} does not explain the outcome ${outcome}`);
  for (const s of NODE_SERIES) assert.ok(doc.includes(s.name), `${DOC} does not mention ${s.name}`);
  for (const file of [DASHBOARD, ALERTS, PROMETHEUS]) assert.ok(doc.includes(file), `${DOC} does not mention ${file}`);
  assert.match(text('docs/operations.md'), /\(observability\.md(#[^)]*)?\)/, 'docs/operations.md links docs/observability.md');
});

const promtool = findBinary('promtool');

void test('promtool check rules and check config accept the Prometheus files', { skip: promtool === undefined ? 'promtool is not installed' : false }, () => {
  for (const args of [
    ['check', 'rules', ALERTS],
    ['check', 'config', PROMETHEUS],
  ]) {
    const r = spawnSync(promtool!, args, { cwd: ROOT, encoding: 'utf8', timeout: 30_000 });
    assert.equal(r.status, 0, `promtool ${args.join(' ')}:\n${r.stdout}${r.stderr}`);
  }
});
