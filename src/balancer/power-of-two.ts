import type { Balancer, BalancerTarget } from './balancer.js';

/**
 * Power of two choices: two distinct eligible targets drawn at random, the less loaded
 * (active/weight) wins. Nearly as even as least-connections, but when several gateway workers
 * share stale load figures they do not all pile onto the same "least" target.
 *
 * The candidates are drawn in proportion to weight (the second among the rest). Drawn uniformly,
 * a target could never win more than 2/N of the picks, so weights beyond that could not be
 * honoured (8:1:1 would top out at 67% instead of 80%), and even within it the heavy targets
 * would settle visibly below their share.
 *
 * A few passes over the fixed list (sum, then find each candidate) instead of collecting the
 * eligible targets into an array per pick.
 */
export class PowerOfTwoBalancer implements Balancer {
  readonly #targets: readonly BalancerTarget[];

  constructor(targets: readonly BalancerTarget[]) {
    this.#targets = targets;
  }

  pick(_key: string | undefined, exclude?: ReadonlySet<BalancerTarget>): BalancerTarget | undefined {
    const targets = this.#targets;
    let eligible = 0;
    let totalWeight = 0;
    let last: BalancerTarget | undefined;
    for (let i = 0; i < targets.length; i++) {
      const target = targets[i]!;
      if (!target.available || (exclude !== undefined && exclude.has(target))) continue;
      eligible++;
      totalWeight += target.weight;
      last = target;
    }
    if (eligible <= 1) return last;

    const first = this.#draw(Math.random() * totalWeight, undefined, exclude);
    // Both draws land on a target: nothing can change `available` during a synchronous pick, and
    // r stays below the weight being walked. The checks are for the types.
    if (first === undefined) return last;
    const second = this.#draw(Math.random() * (totalWeight - first.weight), first, exclude);
    if (second === undefined) return first;
    // On a tie `first` wins; it is a random draw too, so ties are still spread at random.
    return second.active * first.weight < first.active * second.weight ? second : first;
  }

  /** The eligible target (other than `skip`) where the running sum of weights passes r. */
  #draw(r: number, skip: BalancerTarget | undefined, exclude: ReadonlySet<BalancerTarget> | undefined): BalancerTarget | undefined {
    const targets = this.#targets;
    let chosen: BalancerTarget | undefined;
    for (let i = 0; i < targets.length; i++) {
      const target = targets[i]!;
      if (target === skip || !target.available || (exclude !== undefined && exclude.has(target))) continue;
      chosen = target;
      r -= target.weight;
      if (r < 0) break;
    }
    return chosen;
  }
}
