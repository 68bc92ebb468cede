// The one table of wsgate's metric names, their labels and what they mean.
// docs/observability.md, deploy/grafana and deploy/prometheus are written
// against these names (a test checks that every series they use is here):
// renaming one breaks users' dashboards and alerts, so names only ever get added.

export type MetricType = 'counter' | 'gauge' | 'histogram';

/**
 * How a cluster primary combines its workers' values (prom-client's
 * aggregators): `sum` for counts, `max` where every worker reports the
 * same instance-wide value (build info, reloads, certificates, targets' states).
 */
export type Aggregation = 'sum' | 'max';

export interface MetricSpec {
  readonly name: string;
  readonly type: MetricType;
  readonly help: string;
  readonly labels: readonly string[];
  readonly aggregate: Aggregation;
}

function metric(name: string, type: MetricType, labels: readonly string[], help: string, aggregate: Aggregation = 'sum'): MetricSpec {
  return Object.freeze({ name, type, help, labels: Object.freeze([...labels]), aggregate });
}

export const METRICS = Object.freeze({
  buildInfo: metric(
    'wsgate_build_info',
    'gauge',
    ['version', 'node', 'relay_io'],
    'Always 1; the labels say which wsgate runs, on which Node.js, with which relay I/O.',
    'max',
  ),
  connectionsActive: metric('wsgate_connections_active', 'gauge', ['route', 'upstream', 'target'], 'WebSocket connections relayed now (past the 101).'),
  connectionsTotal: metric(
    'wsgate_connections_total',
    'counter',
    ['route', 'upstream', 'target'],
    'WebSocket connections relayed since start (counted at the 101).',
  ),
  handshakes: metric('wsgate_handshakes_total', 'counter', ['route', 'outcome'], 'WebSocket handshakes by outcome; route is "" when none matched.'),
  http2WebSockets: metric(
    'wsgate_http2_websockets_total',
    'counter',
    ['route'],
    'WebSocket connections relayed since start that came over HTTP/2 (extended CONNECT, RFC 8441), counted at the 200; also in wsgate_connections_total.',
  ),
  handshakeDuration: metric(
    'wsgate_handshake_duration_seconds',
    'histogram',
    [],
    'From a complete request head to the 101 sent to the client, for accepted handshakes.',
  ),
  upstreamConnectDuration: metric(
    'wsgate_upstream_connect_duration_seconds',
    'histogram',
    ['upstream', 'target'],
    'From the start of a dial to the upstream 101 (TCP, TLS, PROXY header and the upstream handshake), for each successful attempt.',
  ),
  messages: metric(
    'wsgate_messages_total',
    'counter',
    ['route', 'direction'],
    'Data messages relayed (inspect mode; tunnel mode does not see messages). direction: upstream (client to backend) or downstream.',
  ),
  bytes: metric(
    'wsgate_bytes_total',
    'counter',
    ['route', 'direction'],
    'Bytes relayed on the wire after the handshake. direction: upstream (client to backend) or downstream.',
  ),
  messageSize: metric('wsgate_message_size_bytes', 'histogram', ['direction'], 'Data message sizes (payload bytes across fragments; inspect mode).'),
  closes: metric(
    'wsgate_closes_total',
    'counter',
    ['route', 'code', 'initiator'],
    'Relayed connections ended, by close code ("none": the connection ended without a Close frame, and always in tunnel mode) and by who ended it (client, upstream, gateway).',
  ),
  connectionDuration: metric('wsgate_connection_duration_seconds', 'histogram', [], 'Lifetime of relayed connections, from the 101 to the end.'),
  pings: metric('wsgate_pings_total', 'counter', ['result'], 'Keepalive pings to quiet clients (inspect mode): sent, answered, timed_out.'),
  targetUp: metric(
    'wsgate_upstream_target_up',
    'gauge',
    ['upstream', 'target'],
    '1 when the target takes new connections (healthy, not ejected, not draining), else 0.',
    'max',
  ),
  targetDraining: metric(
    'wsgate_upstream_target_draining',
    'gauge',
    ['upstream', 'target'],
    '1 while the target is drained by an operator or removed by a reload.',
    'max',
  ),
  ejections: metric(
    'wsgate_upstream_ejections_total',
    'counter',
    ['upstream', 'target'],
    'Passive ejections of the target after failed connects or upstream handshakes.',
  ),
  healthChecks: metric('wsgate_health_checks_total', 'counter', ['upstream', 'target', 'result'], 'Active health checks by result: success or failure.'),
  reloads: metric('wsgate_config_reloads_total', 'counter', ['result'], 'Configuration reloads by result: success or failure.', 'max'),
  lastReload: metric(
    'wsgate_config_last_reload_success_timestamp_seconds',
    'gauge',
    [],
    'When the running configuration was applied (start or last successful reload), Unix seconds.',
    'max',
  ),
  certificateExpiry: metric(
    'wsgate_tls_certificate_expiry_timestamp_seconds',
    'gauge',
    ['listener', 'name'],
    'When each TLS certificate in service expires, Unix seconds. name: "default" or the SNI hosts the certificate serves.',
    'max',
  ),
  httpRequests: metric(
    'wsgate_http_requests_total',
    'counter',
    ['route', 'code'],
    'Plain HTTP requests passed through (or refused), by status code; route "" when none matched.',
  ),
  httpRequestDuration: metric('wsgate_http_request_duration_seconds', 'histogram', [], 'Plain HTTP requests, from the request head to the end of the answer.'),
} satisfies Record<string, MetricSpec>);

export type MetricKey = keyof typeof METRICS;

/** Every outcome of a WebSocket handshake, as the `outcome` label says it. */
export const HANDSHAKE_OUTCOMES = [
  'accepted',
  'invalid',
  'unsupported_version',
  'unauthorized',
  'forbidden',
  'ip_denied',
  'rate_limited',
  'over_capacity',
  'no_route',
  'no_healthy_target',
  'upstream_error',
  'upstream_timeout',
  'upstream_rejected',
  'timeout',
  'headers_too_large',
] as const;

export type HandshakeOutcome = (typeof HANDSHAKE_OUTCOMES)[number];

/** Seconds: a handshake on loopback takes well under a millisecond, through an auth service or TLS tens of ms. */
export const LATENCY_BUCKETS = Object.freeze([0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]);
/** Seconds: connections live from a moment to days. */
export const LIFETIME_BUCKETS = Object.freeze([1, 10, 60, 300, 900, 3600, 4 * 3600, 12 * 3600, 86400, 7 * 86400]);
/** Bytes: powers of four from 64 B to 1 MiB (the relays count into these buckets themselves). */
export { SIZE_BOUNDS as SIZE_BUCKETS } from '../relay/relay-tally.js';
