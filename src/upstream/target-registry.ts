import type { UpstreamConfig } from '../config/types.js';
import { TargetState, type TargetGroup, type TargetListener } from './target-state.js';

/** The stable id of a target: the same upstream and URL are the same target across reloads. */
export function targetId(upstream: string, url: string): string {
  return `${upstream}/${url}`;
}

export interface RegistryChanges {
  /** Targets new to the registry, or back after a reload had removed them. */
  readonly added: readonly TargetState[];
  /** Targets the new config no longer has; they are draining. */
  readonly removed: readonly TargetState[];
}

/**
 * Every target's live state, shared by all config snapshots. A reload builds
 * new pools, but their targets read and write the states kept here: health,
 * ejection, drain and connection counts survive it. Targets a reload removes
 * are drained, and forgotten once their last session is gone.
 */
export class TargetRegistry {
  readonly #states = new Map<string, TargetState>();
  readonly #groups = new Map<string, TargetGroup>();
  readonly #listener: TargetListener | undefined;
  #synced = false;

  constructor(listener?: TargetListener) {
    this.#listener = listener;
  }

  get(id: string): TargetState | undefined {
    return this.#states.get(id);
  }

  get size(): number {
    return this.#states.size;
  }

  /** Makes the registry match a config's upstreams: creates, updates, restores and retires target states. */
  sync(upstreams: Readonly<Record<string, UpstreamConfig>>): RegistryChanges {
    const added: TargetState[] = [];
    const removed: TargetState[] = [];
    const seen = new Set<string>();
    const first = !this.#synced;
    this.#synced = true;
    for (const [name, config] of Object.entries(upstreams)) {
      let group = this.#groups.get(name);
      if (group === undefined) {
        group = { name, config, members: [] };
        this.#groups.set(name, group);
      }
      group.config = config;
      const members: TargetState[] = [];
      for (const target of config.targets) {
        const id = targetId(name, target.url);
        seen.add(id);
        let state = this.#states.get(id);
        if (state === undefined) {
          state = new TargetState(id, group, this.#listener);
          this.#states.set(id, state);
          // A target that joins a running gateway ramps up like a recovered one.
          if (!first) state.warm();
          added.push(state);
        } else if (state.removed) {
          state.group = group;
          state.undrain('removed');
          added.push(state);
        }
        state.group = group;
        members.push(state);
      }
      group.members = members;
    }
    for (const name of [...this.#groups.keys()]) if (!Object.hasOwn(upstreams, name)) this.#groups.delete(name);
    for (const [id, state] of this.#states) {
      if (seen.has(id)) continue;
      if (!state.removed) {
        state.drain('removed');
        removed.push(state);
      } else if (state.sessions.size === 0 && state.active === 0) {
        // Removed by an earlier reload and fully drained since.
        state.dispose();
        this.#states.delete(id);
      }
    }
    return { added, removed };
  }

  /** Targets removed by a reload whose connections are still being drained (or not yet forgotten). */
  removedStates(upstream: string): TargetState[] {
    const out: TargetState[] = [];
    for (const state of this.#states.values()) if (state.removed && state.group.name === upstream) out.push(state);
    return out;
  }

  /** Stops every timer; the gateway is stopping. */
  stopTimers(): void {
    for (const state of this.#states.values()) state.stopTimers();
  }

  /** Disposes of every state (timers, keep-alive pools). */
  async close(): Promise<void> {
    const pools = [...this.#states.values()].map((s) => s.http?.close());
    for (const state of this.#states.values()) {
      state.http = undefined;
      state.dispose();
    }
    await Promise.allSettled(pools);
  }
}
