import { AggregatorRegistry, collectDefaultMetrics, Registry, type MetricObjectWithValues, type MetricValue } from 'prom-client';
import type { ErrorCode } from '../errors.js';
import { RelayTally, SIZE_BOUNDS, type SizeCounts } from '../relay/relay-tally.js';
import { HANDSHAKE_OUTCOMES, LATENCY_BUCKETS, LIFETIME_BUCKETS, METRICS, type HandshakeOutcome, type MetricSpec } from './metric-table.js';

// The gateway's metrics. Everything on the connection path is a plain
// number, a Map entry or a bucket increment; prom-client only sees the
// values when Prometheus scrapes (each series is a collector that reads them
// then), so a message, and nearly all of a handshake, costs no registry call.
// Live sessions are read at scrape time too: their bytes and messages are
// the relays' own counters, folded into the route's totals when they end.

/** The live state a scrape reads from the gateway. */
export interface MetricsView {
  relayIo(): string;
  /** Sessions past the 101. */
  liveSessions(): Iterable<LiveSession>;
  targets(): Iterable<TargetView>;
  certificates(): Iterable<CertificateView>;
}

/** A relay's own counters. */
export interface RelayCounts {
  readonly bytesFromClient: number;
  readonly bytesFromUpstream: number;
  readonly messagesFromClient: number;
  readonly messagesFromUpstream: number;
}

export interface LiveSession {
  readonly route: string;
  readonly upstream: string;
  readonly target: string;
  readonly relay: RelayCounts;
}

export interface TargetView {
  readonly upstream: string;
  readonly target: string;
  readonly up: boolean;
  readonly draining: boolean;
  readonly ejections: number;
  readonly checksPassed: number;
  readonly checksFailed: number;
}

export interface CertificateView {
  readonly listener: string;
  readonly name: string;
  /** Unix seconds. */
  readonly notAfter: number;
}

/** How a session ended, for wsgate_closes_total. */
export interface SessionEnd {
  readonly closedBy: string;
  /** The first Close frame's code; undefined: none was seen. */
  readonly code?: number | undefined;
}

type Labels = Record<string, string>;

/** A registry's series in prom-client's JSON form: what workers send their primary to sum. */
export type MetricJson = MetricObjectWithValues<MetricValue<string>>;

const OUTCOME_INDEX = new Map<string, number>(HANDSHAKE_OUTCOMES.map((o, i) => [o, i]));

/** What each refusal in the error catalogue counts as. */
const OUTCOME_OF: Record<ErrorCode, HandshakeOutcome> = {
  HANDSHAKE_MALFORMED: 'invalid',
  PROXY_PROTOCOL_INVALID: 'invalid',
  VERSION_UNSUPPORTED: 'unsupported_version',
  HEADERS_TOO_LARGE: 'headers_too_large',
  HANDSHAKE_TIMEOUT: 'timeout',
  NO_ROUTE: 'no_route',
  IP_FORBIDDEN: 'ip_denied',
  ORIGIN_FORBIDDEN: 'forbidden',
  AUTH_FORBIDDEN: 'forbidden',
  AUTH_DENIED: 'forbidden',
  AUTH_MISSING: 'unauthorized',
  AUTH_INVALID: 'unauthorized',
  // The client could not be authenticated; the auth service's own state shows in its logs.
  AUTH_UNAVAILABLE: 'unauthorized',
  PER_IP_RATE: 'rate_limited',
  PER_IP_CONNECTIONS: 'rate_limited',
  OVER_CAPACITY: 'over_capacity',
  SHARED_STATE_UNAVAILABLE: 'over_capacity',
  SHUTTING_DOWN: 'over_capacity',
  NO_TARGET: 'no_healthy_target',
  UPSTREAM_REFUSED: 'upstream_error',
  UPSTREAM_RESET: 'upstream_error',
  UPSTREAM_BAD_RESPONSE: 'upstream_error',
  UPSTREAM_TIMEOUT: 'upstream_timeout',
};

export function outcomeOf(code: ErrorCode): HandshakeOutcome {
  return OUTCOME_OF[code];
}

/** A histogram as plain buckets (not cumulative; the last one is +Inf). */
export class Buckets {
  readonly bounds: readonly number[];
  readonly counts: Float64Array;
  sum = 0;

  constructor(bounds: readonly number[]) {
    this.bounds = bounds;
    this.counts = new Float64Array(bounds.length + 1);
  }

  observe(value: number): void {
    const b = this.bounds;
    let i = 0;
    while (i < b.length && value > b[i]!) i++;
    this.counts[i]!++;
    this.sum += value;
  }
}

/** A count under a fixed set of labels. */
interface Counted {
  readonly labels: Labels;
  value: number;
}

/** Per route: handshakes by outcome, then the ended sessions' traffic. */
interface RouteTally {
  readonly handshakes: Float64Array;
  /** Accepted handshakes that came over HTTP/2. */
  http2: number;
  messagesUp: number;
  messagesDown: number;
  bytesUp: number;
  bytesDown: number;
}

export class GatewayMetrics {
  readonly registry = new Registry();
  /** Handed to every relay. */
  readonly tally = new RelayTally();
  readonly #view: MetricsView;
  readonly #version: string;
  readonly #routes = new Map<string, RouteTally>();
  // Keyed level by level by label values that come from the config (strings whose hashes V8 keeps):
  // a handshake or a close builds no key string and allocates nothing once its series exists.
  readonly #opened: Tree<Tree<Tree<Counted>>> = new Map();
  readonly #closes: Tree<Tree<Tree<Counted>>> = new Map();
  readonly #http: Tree<Tree<Counted>> = new Map();
  readonly #connect: Tree<Tree<{ labels: Labels; buckets: Buckets }>> = new Map();
  readonly #handshakeTime = new Buckets(LATENCY_BUCKETS);
  readonly #lifetime = new Buckets(LIFETIME_BUCKETS);
  readonly #httpTime = new Buckets(LATENCY_BUCKETS);
  readonly #reloads = new ReloadCount();

  constructor(view: MetricsView, version: string) {
    this.#view = view;
    this.#version = version;
    const add = (spec: MetricSpec, read: () => MetricValue<string>[]): void => this.registry.registerMetric(new Series(spec, read) as never);
    add(METRICS.buildInfo, () => [{ labels: { version: this.#version, node: process.version, relay_io: this.#view.relayIo() }, value: 1 }]);
    add(METRICS.connectionsActive, () => this.#active());
    add(METRICS.connectionsTotal, () => values(leaves(this.#opened)));
    add(METRICS.handshakes, () => this.#handshakes());
    add(METRICS.http2WebSockets, () => [...this.#routes].filter(([, r]) => r.http2 > 0).map(([route, r]) => ({ labels: { route }, value: r.http2 })));
    add(METRICS.handshakeDuration, () => histogram(METRICS.handshakeDuration.name, this.#handshakeTime, {}));
    add(METRICS.upstreamConnectDuration, () =>
      leaves<{ labels: Labels; buckets: Buckets }>(this.#connect).flatMap((c) => histogram(METRICS.upstreamConnectDuration.name, c.buckets, c.labels)),
    );
    add(METRICS.messages, () => this.#traffic('messages'));
    add(METRICS.bytes, () => this.#traffic('bytes'));
    add(METRICS.messageSize, () => [...sizeHistogram(this.tally.upstreamSizes, 'upstream'), ...sizeHistogram(this.tally.downstreamSizes, 'downstream')]);
    add(METRICS.closes, () => values(leaves(this.#closes)));
    add(METRICS.connectionDuration, () => histogram(METRICS.connectionDuration.name, this.#lifetime, {}));
    add(METRICS.pings, () => [
      { labels: { result: 'sent' }, value: this.tally.pingsSent },
      { labels: { result: 'answered' }, value: this.tally.pingsAnswered },
      { labels: { result: 'timed_out' }, value: this.tally.pingsTimedOut },
    ]);
    add(METRICS.targetUp, () => [...this.#view.targets()].map((t) => ({ labels: targetLabels(t), value: t.up ? 1 : 0 })));
    add(METRICS.targetDraining, () => [...this.#view.targets()].map((t) => ({ labels: targetLabels(t), value: t.draining ? 1 : 0 })));
    add(METRICS.ejections, () => [...this.#view.targets()].map((t) => ({ labels: targetLabels(t), value: t.ejections })));
    add(METRICS.healthChecks, () => healthChecks(this.#view.targets()));
    this.#reloads.register(this.registry);
    add(METRICS.certificateExpiry, () => [...this.#view.certificates()].map((c) => ({ labels: { listener: c.listener, name: c.name }, value: c.notAfter })));
    add(METRICS.httpRequests, () => values(leaves(this.#http)));
    add(METRICS.httpRequestDuration, () => histogram(METRICS.httpRequestDuration.name, this.#httpTime, {}));
  }

  // --- what the connection path reports -------------------------------------

  handshake(route: string, outcome: HandshakeOutcome): void {
    this.#route(route).handshakes[OUTCOME_INDEX.get(outcome)!]!++;
  }

  /** A 101 went to the client: `headMs` and `dialMs` are performance.now() at the request head and at the dial's start. */
  accepted(route: string, upstream: string, target: string, headMs: number, dialMs: number): void {
    this.handshake(route, 'accepted');
    const now = performance.now();
    this.#handshakeTime.observe((now - headMs) / 1000);
    const byTarget = level(level(this.#opened, route), upstream);
    const opened = byTarget.get(target);
    if (opened !== undefined) opened.value++;
    else byTarget.set(target, { labels: { route, upstream, target }, value: 1 });
    const targets = level(this.#connect, upstream);
    let c = targets.get(target);
    if (c === undefined) targets.set(target, (c = { labels: { upstream, target }, buckets: new Buckets(LATENCY_BUCKETS) }));
    c.buckets.observe((now - dialMs) / 1000);
  }

  /** The WebSocket accepted() just counted came over an HTTP/2 stream. */
  http2WebSocket(route: string): void {
    this.#route(route).http2++;
  }

  /** A relayed session ended: its counters join the route's totals. */
  ended(route: string, relay: RelayCounts, end: SessionEnd, lifetimeMs: number): void {
    const r = this.#route(route);
    r.messagesUp += relay.messagesFromClient;
    r.messagesDown += relay.messagesFromUpstream;
    r.bytesUp += relay.bytesFromClient;
    r.bytesDown += relay.bytesFromUpstream;
    const code = end.code === undefined ? 'none' : String(end.code);
    const byInitiator = level(level(this.#closes, route), code);
    const closes = byInitiator.get(end.closedBy);
    if (closes !== undefined) closes.value++;
    else byInitiator.set(end.closedBy, { labels: { route, code, initiator: end.closedBy }, value: 1 });
    this.#lifetime.observe(lifetimeMs / 1000);
  }

  httpRequest(route: string, status: number, ms: number): void {
    const code = String(status);
    const byCode = level(this.#http, route);
    const requests = byCode.get(code);
    if (requests !== undefined) requests.value++;
    else byCode.set(code, { labels: { route, code }, value: 1 });
    this.#httpTime.observe(ms / 1000);
  }

  reloaded(ok: boolean): void {
    this.#reloads.count(ok);
  }

  /** The gateway's series in prom-client's JSON form (what a worker sends its primary). */
  json(): Promise<MetricJson[]> {
    return this.registry.getMetricsAsJSON();
  }

  // --- scrape time ---------------------------------------------------------------

  #route(route: string): RouteTally {
    let r = this.#routes.get(route);
    if (r === undefined) {
      r = { handshakes: new Float64Array(HANDSHAKE_OUTCOMES.length), http2: 0, messagesUp: 0, messagesDown: 0, bytesUp: 0, bytesDown: 0 };
      this.#routes.set(route, r);
    }
    return r;
  }

  #handshakes(): MetricValue<string>[] {
    const out: MetricValue<string>[] = [];
    for (const [route, r] of this.#routes) {
      r.handshakes.forEach((value, i) => {
        if (value > 0) out.push({ labels: { route, outcome: HANDSHAKE_OUTCOMES[i]! }, value });
      });
    }
    return out;
  }

  #active(): MetricValue<string>[] {
    const live = new Map<string, number>();
    for (const s of this.#view.liveSessions()) {
      const key = `${s.route}\0${s.upstream}\0${s.target}`;
      live.set(key, (live.get(key) ?? 0) + 1);
    }
    // Every series that ever had a connection, at 0 when it has none now: a graph shows the drop rather than a gap.
    return leaves<Counted>(this.#opened).map((c) => ({
      labels: c.labels,
      value: live.get(`${c.labels.route}\0${c.labels.upstream}\0${c.labels.target}`) ?? 0,
    }));
  }

  #traffic(kind: 'messages' | 'bytes'): MetricValue<string>[] {
    const live = new Map<string, [number, number]>();
    for (const s of this.#view.liveSessions()) {
      let t = live.get(s.route);
      if (t === undefined) live.set(s.route, (t = [0, 0]));
      const r = s.relay;
      t[0] += kind === 'bytes' ? r.bytesFromClient : r.messagesFromClient;
      t[1] += kind === 'bytes' ? r.bytesFromUpstream : r.messagesFromUpstream;
    }
    const out: MetricValue<string>[] = [];
    for (const route of new Set([...this.#routes.keys(), ...live.keys()])) {
      const r = this.#routes.get(route);
      const l = live.get(route);
      // Routes that only ever refused have no traffic series.
      if (l === undefined && (r === undefined || r.handshakes[0] === 0)) continue;
      const up = (kind === 'bytes' ? r?.bytesUp : r?.messagesUp) ?? 0;
      const down = (kind === 'bytes' ? r?.bytesDown : r?.messagesDown) ?? 0;
      out.push(
        { labels: { route, direction: 'upstream' }, value: up + (l?.[0] ?? 0) },
        { labels: { route, direction: 'downstream' }, value: down + (l?.[1] ?? 0) },
      );
    }
    return out;
  }
}

/**
 * A cluster primary's own series: the active health checks it runs for the
 * instance and the reloads it takes; its workers count everything else.
 */
export class PrimaryMetrics {
  readonly registry = new Registry();
  readonly #reloads = new ReloadCount();

  constructor(targets: () => Iterable<TargetView>) {
    this.registry.registerMetric(new Series(METRICS.healthChecks, () => healthChecks(targets())) as never);
    this.#reloads.register(this.registry);
  }

  reloaded(ok: boolean): void {
    this.#reloads.count(ok);
  }
}

/** wsgate_config_reloads_total and the time of the last config applied. */
class ReloadCount {
  #ok = 0;
  #failed = 0;
  #last = Date.now() / 1000;

  count(ok: boolean): void {
    if (!ok) {
      this.#failed++;
      return;
    }
    this.#ok++;
    this.#last = Date.now() / 1000;
  }

  register(registry: Registry): void {
    registry.registerMetric(
      new Series(METRICS.reloads, () => [
        { labels: { result: 'success' }, value: this.#ok },
        { labels: { result: 'failure' }, value: this.#failed },
      ]) as never,
    );
    registry.registerMetric(new Series(METRICS.lastReload, () => [{ labels: {}, value: this.#last }]) as never);
  }
}

/** One series of the table, read from plain values when scraped. */
class Series {
  readonly name: string;
  readonly help: string;
  readonly type: string;
  readonly aggregator: string;
  readonly #read: () => MetricValue<string>[];

  constructor(spec: MetricSpec, read: () => MetricValue<string>[]) {
    this.name = spec.name;
    this.help = spec.help;
    this.type = spec.type;
    this.aggregator = spec.aggregate;
    this.#read = read;
  }

  get(): MetricObjectWithValues<MetricValue<string>> {
    return { name: this.name, help: this.help, type: this.type, values: this.#read(), aggregator: this.aggregator } as unknown as MetricObjectWithValues<
      MetricValue<string>
    >;
  }
}

/** One level of label values. */
type Tree<T> = Map<string, T>;

/** The next level under `key`, made on first use. */
function level<T>(tree: Tree<Tree<T>>, key: string): Tree<T> {
  let next = tree.get(key);
  if (next === undefined) tree.set(key, (next = new Map()));
  return next;
}

/** Every leaf of a tree of Maps, in insertion order. */
function leaves<T extends object>(tree: Map<string, unknown>): T[] {
  const out: T[] = [];
  for (const v of tree.values()) {
    if (v instanceof Map) out.push(...leaves<T>(v as Map<string, unknown>));
    else out.push(v as T);
  }
  return out;
}

function values(counts: readonly Counted[]): MetricValue<string>[] {
  return counts.map((c) => ({ labels: c.labels, value: c.value }));
}

function targetLabels(t: TargetView): Labels {
  return { upstream: t.upstream, target: t.target };
}

function healthChecks(targets: Iterable<TargetView>): MetricValue<string>[] {
  const out: MetricValue<string>[] = [];
  for (const t of targets) {
    if (t.checksPassed + t.checksFailed === 0) continue;
    out.push(
      { labels: { ...targetLabels(t), result: 'success' }, value: t.checksPassed },
      { labels: { ...targetLabels(t), result: 'failure' }, value: t.checksFailed },
    );
  }
  return out;
}

/** prom-client's histogram form: cumulative _bucket values by `le`, then _sum and _count. */
export function histogram(
  name: string,
  b: { readonly bounds: readonly number[]; readonly counts: ArrayLike<number>; readonly sum: number },
  labels: Labels,
): MetricValue<string>[] {
  const out: (MetricValue<string> & { metricName: string })[] = [];
  let total = 0;
  for (let i = 0; i <= b.bounds.length; i++) {
    total += b.counts[i]!;
    out.push({ metricName: `${name}_bucket`, labels: { ...labels, le: i < b.bounds.length ? String(b.bounds[i]) : '+Inf' }, value: total });
  }
  out.push({ metricName: `${name}_sum`, labels, value: b.sum }, { metricName: `${name}_count`, labels, value: total });
  return out;
}

function sizeHistogram(sizes: SizeCounts, direction: string): MetricValue<string>[] {
  return histogram(METRICS.messageSize.name, { bounds: SIZE_BOUNDS, counts: sizes, sum: sizes[SIZE_BOUNDS.length + 1]! }, { direction });
}

let processRegistry: Registry | undefined;

/** Node's process and runtime series, once per process however many gateways it runs. */
export function runtimeRegistry(): Registry {
  if (processRegistry === undefined) {
    processRegistry = new Registry();
    collectDefaultMetrics({ register: processRegistry });
  }
  return processRegistry;
}

/** The instance's series from its primary's and its workers' (each a list of runtime and gateway series). */
export function aggregate(parts: readonly MetricJson[][]): Promise<string> {
  return AggregatorRegistry.aggregate(parts as never).metrics();
}

/** The same, as JSON (what the primary's /api/stats reads, and how it folds in a dead worker's counts); synchronous, so two folds cannot interleave. */
export function aggregateJson(parts: readonly MetricJson[][]): MetricJson[] {
  // The aggregated registry's metrics answer get() at once: no need for its asynchronous getMetricsAsJSON().
  return AggregatorRegistry.aggregate(parts as never)
    .getMetricsAsArray()
    .map((m) => (m as unknown as { get(): MetricJson }).get());
}

/** The Prometheus text for `/metrics`: the runtime series, then the gateway's. */
export async function metricsText(metrics: GatewayMetrics): Promise<string> {
  const [runtime, gateway] = await Promise.all([runtimeRegistry().metrics(), metrics.registry.metrics()]);
  return runtime + gateway;
}

export const METRICS_CONTENT_TYPE = Registry.PROMETHEUS_CONTENT_TYPE;
