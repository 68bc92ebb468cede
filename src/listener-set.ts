import type { AddressInfo } from 'node:net';
import type { Limits, ListenerConfig } from './config/types.js';
import type { Listener } from './listener/listener.js';

export type MakeListener = (config: ListenerConfig, limits: Limits) => Listener;

/** A reload's new listeners, bound but not yet in service. */
export interface ListenerPlan {
  /** Retires the listeners the new config dropped; returns the bound addresses in config order. */
  commit(): { addresses: AddressInfo[]; added: string[]; removed: string[] };
  /** The reload failed: unbinds the new listeners. */
  rollback(): Promise<void>;
}

/**
 * The gateway's listeners across reloads. A listener the new config still has
 * (same address, same TLS-or-not) is kept with its open connections and
 * takes on the rest of the new settings for new connections (Listener.reload:
 * limits, IP lists, PROXY protocol, TLS settings); a new address is bound
 * before anything else changes, so a reload that cannot bind changes nothing;
 * a dropped one stops accepting and its connections run on until they end
 * (or shutdown cuts them).
 */
export class ListenerSet {
  readonly #make: MakeListener;
  #active: Listener[] = [];
  readonly #retired = new Set<Listener>();
  readonly #closing = new Set<Promise<void>>();

  constructor(make: MakeListener) {
    this.#make = make;
  }

  get listeners(): readonly Listener[] {
    return this.#active;
  }

  async start(configs: readonly ListenerConfig[], limits: Limits): Promise<AddressInfo[]> {
    const listeners = configs.map((c) => this.#make(c, limits));
    try {
      const addresses = await Promise.all(listeners.map((l) => l.listen()));
      this.#active = listeners;
      return addresses;
    } catch (err) {
      await Promise.all(listeners.map((l) => l.close()));
      throw err;
    }
  }

  /** Binds what the new config adds. Rejects (with nothing changed) when an address cannot be bound. */
  async prepare(configs: readonly ListenerConfig[], limits: Limits): Promise<ListenerPlan> {
    const unused = [...this.#active];
    const next: (Listener | undefined)[] = configs.map((c) => {
      const i = unused.findIndex((l) => sameKind(l.config, c));
      return i === -1 ? undefined : unused.splice(i, 1)[0];
    });
    // An address taken by a listener of another kind must be freed first: it cannot be bound twice.
    const replaced = unused.filter((old) => configs.some((c, i) => next[i] === undefined && sameAddress(old.config, c) && old.config.port !== 0));
    for (const old of replaced) await this.#retire(old);
    const fresh: Listener[] = [];
    try {
      for (let i = 0; i < configs.length; i++) {
        if (next[i] !== undefined) continue;
        const listener = this.#make(configs[i]!, limits);
        fresh.push(listener);
        next[i] = listener;
        await listener.listen();
      }
    } catch (err) {
      await Promise.all(fresh.map((l) => l.close()));
      throw err;
    }
    const kept = next.filter((l): l is Listener => l !== undefined && !fresh.includes(l));
    return {
      commit: () => {
        const listeners = next as Listener[];
        for (const l of kept) l.reload(configs[listeners.indexOf(l)]!, limits);
        const removed = unused.filter((l) => !replaced.includes(l));
        for (const old of removed) void this.#retire(old);
        this.#active = listeners;
        return {
          addresses: listeners.map((l) => l.server.address() as AddressInfo),
          added: fresh.map((l) => l.config.address),
          removed: [...removed, ...replaced].map((l) => l.config.address),
        };
      },
      rollback: async () => {
        await Promise.all(fresh.map((l) => l.close()));
      },
    };
  }

  /** Stops accepting everywhere; resolves once every connection of every listener is gone. */
  close(): Promise<void> {
    return Promise.all([...this.#active.map((l) => l.close()), ...this.#closing]).then(noop);
  }

  /** Cuts what HTTP connections remain (keep-alive, half-sent requests, HTTP/2 connections). */
  closeAllConnections(): void {
    for (const l of [...this.#active, ...this.#retired]) l.closeAllConnections();
  }

  #retire(listener: Listener): Promise<void> {
    this.#retired.add(listener);
    const closed: Promise<void> = listener.close().then(() => {
      this.#retired.delete(listener);
      this.#closing.delete(closed);
    });
    this.#closing.add(closed);
    // Stopped accepting once the listening socket is closed; the connections it had run on.
    return new Promise((resolve) => setImmediate(resolve));
  }
}

/**
 * Same address, TLS or not: the listener can stay, bound, and take on the
 * rest. Switching TLS needs another kind of server; PROXY protocol does not
 * (it is read per connection).
 */
function sameKind(a: ListenerConfig, b: ListenerConfig): boolean {
  return sameAddress(a, b) && (a.tls === undefined) === (b.tls === undefined);
}

function sameAddress(a: ListenerConfig, b: ListenerConfig): boolean {
  return a.host === b.host && a.port === b.port;
}

function noop(): void {}
