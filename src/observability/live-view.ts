import { X509Certificate } from 'node:crypto';
import type { ListedSession } from '../admin/connections.js';
import type { Listener } from '../listener/listener.js';
import type { Session } from '../session/upgrade.js';
import type { UpstreamPool } from '../upstream/pool.js';
import type { TargetState } from '../upstream/target-state.js';
import type { CertificateView, TargetView } from './metrics.js';

// What a scrape and the admin API read of the running gateway: its relayed
// sessions, its targets and its certificates, as plain views.

/** The sessions past their 101, in the order they began. */
export function* relayedSessions(sessions: Iterable<Session>): Generator<ListedSession> {
  for (const s of sessions) {
    const relay = s.relay;
    const target = s.target;
    if (relay === undefined || target === undefined) continue;
    yield {
      id: s.id,
      client: s.client,
      route: s.route.name,
      upstream: s.route.upstream,
      target: target.config.url,
      relay,
      subprotocol: s.subprotocol,
      protocol: s.protocol,
      relayedAt: s.relayedAt,
      relayMode: s.relayMode,
    };
  }
}

/** Every target of every upstream, and those a reload removed that still drain. */
export function* targetViews(pools: Iterable<UpstreamPool>, removed: (upstream: string) => readonly TargetState[]): Generator<TargetView> {
  for (const pool of pools) {
    for (const t of pool.targets) yield targetView(pool.name, t.config.url, t.state);
    for (const state of removed(pool.name)) yield targetView(pool.name, state.id.slice(pool.name.length + 1), state);
  }
}

export function targetView(upstream: string, target: string, s: TargetState): TargetView {
  return {
    upstream,
    target,
    up: s.available,
    draining: s.drained || s.removed,
    ejections: s.ejectionsTotal,
    checksPassed: s.checksPassed,
    checksFailed: s.checksFailed,
  };
}

const expiries = new WeakMap<Buffer, number>();

/** The TLS listeners' certificates in service, with their expiry (parsed once per certificate). */
export function* certificateViews(listeners: readonly Listener[]): Generator<CertificateView> {
  for (const l of listeners) {
    for (const { name, cert } of l.certificates()) {
      let notAfter = expiries.get(cert);
      if (notAfter === undefined) {
        try {
          notAfter = Date.parse(new X509Certificate(cert).validTo) / 1000;
        } catch {
          notAfter = 0;
        }
        expiries.set(cert, notAfter);
      }
      yield { listener: l.config.address, name, notAfter };
    }
  }
}
