import type { ModelDeployment } from "../config/settings.js";

/**
 * The deployments a request for a model may go to, first choice first (docs/routing.md). A model's deployments
 * are grouped by `order`: the lowest order serves, the next only after it (all of the first cooling down, or
 * failed for this request). Within an order, traffic is shared by `weight` with a smooth weighted round-robin
 * (nginx's): deterministic, and spread evenly over time rather than in bursts. The first choice rotates; the
 * others follow, heaviest first, for retries. The cursor is this replica's: shares hold per replica, and so, with
 * every replica alike, for the cluster.
 */
export class ModelRouter {
  private readonly byName = new Map<string, OrderGroup[]>();

  constructor(deployments: ModelDeployment[]) {
    const lists = new Map<string, ModelDeployment[]>();
    for (const d of deployments) lists.set(d.modelName, [...(lists.get(d.modelName) ?? []), d]);
    for (const [name, list] of lists) {
      const orders = [...new Set(list.map((d) => d.order))].sort((a, b) => a - b);
      this.byName.set(
        name,
        orders.map((order) => new OrderGroup(list.filter((d) => d.order === order))),
      );
    }
  }

  /** Every deployment of `model` in the order to try them, or undefined when no deployment serves it. */
  pick(model: string): ModelDeployment[] | undefined {
    const groups = this.byName.get(model);
    if (!groups) return undefined;
    if (groups.length === 1) return groups[0]!.next();
    return groups.flatMap((g) => g.next());
  }

  modelNames(): ReadonlySet<string> {
    return new Set(this.byName.keys());
  }
}

class OrderGroup {
  private readonly current: number[];
  private readonly total: number;
  /** The deployments heaviest first: the order retries take after the first choice. */
  private readonly byWeight: ModelDeployment[];

  constructor(private readonly deployments: ModelDeployment[]) {
    this.current = deployments.map(() => 0);
    this.total = deployments.reduce((sum, d) => sum + d.weight, 0);
    this.byWeight = [...deployments].sort((a, b) => b.weight - a.weight);
  }

  /** The next first choice (smooth weighted round-robin), then the others. */
  next(): ModelDeployment[] {
    if (this.deployments.length === 1) return this.deployments;
    let best = 0;
    for (let i = 0; i < this.deployments.length; i++) {
      this.current[i]! += this.deployments[i]!.weight;
      if (this.current[i]! > this.current[best]!) best = i;
    }
    this.current[best]! -= this.total;
    const first = this.deployments[best]!;
    return [first, ...this.byWeight.filter((d) => d !== first)];
  }
}
