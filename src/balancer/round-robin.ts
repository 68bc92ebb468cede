import type { Balancer, BalancerTarget } from './balancer.js';

/**
 * Smooth weighted round-robin, nginx's algorithm (ngx_http_upstream_get_peer): every eligible
 * target gains its weight, the one with the highest running score wins and pays back the total.
 * Unlike plain weighted round-robin it interleaves (5:1:1 gives a,a,b,a,c,a,a, not a×5,b,c), so
 * a heavy target never receives a burst of consecutive handshakes.
 *
 * Unavailable and excluded targets take no part in a pick (nginx skips down peers the same way),
 * so the proportions hold among whichever targets are eligible at the time.
 */
export class RoundRobinBalancer implements Balancer {
  readonly #targets: readonly BalancerTarget[];
  readonly #current: Float64Array;

  constructor(targets: readonly BalancerTarget[]) {
    this.#targets = targets;
    this.#current = new Float64Array(targets.length);
  }

  pick(_key: string | undefined, exclude?: ReadonlySet<BalancerTarget>): BalancerTarget | undefined {
    const targets = this.#targets;
    const current = this.#current;
    let best = -1;
    let bestScore = 0;
    let total = 0;
    for (let i = 0; i < targets.length; i++) {
      const target = targets[i]!;
      if (!target.available || (exclude !== undefined && exclude.has(target))) continue;
      const score = current[i]! + target.weight;
      current[i] = score;
      total += target.weight;
      // Strictly greater: ties go to the earlier target, which is what makes the sequence nginx's.
      if (best === -1 || score > bestScore) {
        best = i;
        bestScore = score;
      }
    }
    if (best === -1) return undefined;
    current[best] = bestScore - total;
    return targets[best];
  }
}
