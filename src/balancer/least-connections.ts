import type { Balancer, BalancerTarget } from './balancer.js';

/**
 * Weighted least connections: the eligible target with the lowest active/weight wins.
 *
 * Ties are broken at random (reservoir sampling over the tied targets, so no array is built):
 * always taking the first tied target would send every handshake of a burst that arrives
 * before `active` is incremented — and every one after a reload, when all are idle — to the
 * same target.
 */
export class LeastConnectionsBalancer implements Balancer {
  readonly #targets: readonly BalancerTarget[];

  constructor(targets: readonly BalancerTarget[]) {
    this.#targets = targets;
  }

  pick(_key: string | undefined, exclude?: ReadonlySet<BalancerTarget>): BalancerTarget | undefined {
    const targets = this.#targets;
    let best: BalancerTarget | undefined;
    let ties = 0;
    for (let i = 0; i < targets.length; i++) {
      const target = targets[i]!;
      if (!target.available || (exclude !== undefined && exclude.has(target))) continue;
      if (best === undefined) {
        best = target;
        ties = 1;
        continue;
      }
      // Cross-multiplied so that equal loads compare equal exactly (no float division).
      const diff = target.active * best.weight - best.active * target.weight;
      if (diff < 0) {
        best = target;
        ties = 1;
      } else if (diff === 0) {
        ties++;
        if (Math.random() * ties < 1) best = target;
      }
    }
    return best;
  }
}
