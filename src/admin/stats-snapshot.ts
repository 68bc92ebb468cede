import type { MetricObjectWithValues, MetricValue } from 'prom-client';
import { HANDSHAKE_OUTCOMES, LATENCY_BUCKETS, METRICS, type HandshakeOutcome } from '../observability/metric-table.js';
import type { UpstreamStatus } from './status.js';
import type { StatsSnapshot } from './stats.js';

type MetricJson = MetricObjectWithValues<MetricValue<string>>;

const STARTED = Date.now();

/**
 * GET /api/stats, read off the metrics (a process's own, or a primary's sum
 * of its workers'), so the dashboard and Prometheus always agree.
 * Without metrics (admin.metrics: false) the totals are zero and the active
 * count is `sessions`.
 */
export function statsSnapshot(
  metrics: readonly MetricJson[] | undefined,
  upstreams: readonly UpstreamStatus[],
  workers: number,
  sessions: number,
): StatsSnapshot {
  const byName = new Map((metrics ?? []).map((m) => [m.name, m.values] as const));
  const series = (name: string): readonly MetricValue<string>[] => byName.get(name) ?? [];
  const sumWhere = (name: string, label: string, value: string): number => series(name).reduce((n, v) => n + (v.labels[label] === value ? v.value : 0), 0);

  const byRoute: Record<string, number> = {};
  let active = 0;
  for (const v of series(METRICS.connectionsActive.name)) {
    const route = String(v.labels.route);
    byRoute[route] = (byRoute[route] ?? 0) + v.value;
    active += v.value;
  }
  const handshakes = Object.fromEntries(HANDSHAKE_OUTCOMES.map((o) => [o, 0])) as Record<HandshakeOutcome, number>;
  for (const v of series(METRICS.handshakes.name)) handshakes[v.labels.outcome as HandshakeOutcome] += v.value;
  const closes: Record<string, number> = {};
  for (const v of series(METRICS.closes.name)) {
    const code = String(v.labels.code);
    closes[code] = (closes[code] ?? 0) + v.value;
  }
  const hist = series(METRICS.handshakeDuration.name) as readonly (MetricValue<string> & { metricName?: string })[];
  const counts = [...LATENCY_BUCKETS.map(String), '+Inf'].map((le) =>
    hist.reduce((n, v) => n + (v.metricName?.endsWith('_bucket') === true && String(v.labels.le) === le ? v.value : 0), 0),
  );
  const histValue = (suffix: string): number => hist.reduce((n, v) => n + (v.metricName?.endsWith(suffix) === true ? v.value : 0), 0);
  return {
    time: Date.now(),
    uptimeSeconds: Math.round((Date.now() - STARTED) / 1000),
    metrics: metrics !== undefined,
    workers,
    connections: { active: metrics === undefined ? sessions : active, byRoute, total: series(METRICS.connectionsTotal.name).reduce((n, v) => n + v.value, 0) },
    handshakes,
    messages: { upstream: sumWhere(METRICS.messages.name, 'direction', 'upstream'), downstream: sumWhere(METRICS.messages.name, 'direction', 'downstream') },
    bytes: { upstream: sumWhere(METRICS.bytes.name, 'direction', 'upstream'), downstream: sumWhere(METRICS.bytes.name, 'direction', 'downstream') },
    closes,
    handshakeDuration: { buckets: LATENCY_BUCKETS, counts, count: histValue('_count'), sum: histValue('_sum') },
    upstreams,
  };
}
