import type { RouterSettings, RoutingStrategyName } from "../config/router-settings.js";
import type { ModelDeployment } from "../config/settings.js";
import type { DeploymentLoad } from "./deployment-load.js";

/**
 * LiteLLM's `routing_strategy`, applied to the deployments the model router lists (docs/routing.md, "Strategies").
 * The router (model-router.ts) lists a model's deployments by `order`, the first choice of the lowest order
 * rotating by weight; a strategy reorders that first order group by what it measures — the other groups serve only
 * when the first cannot, whatever the strategy. Ties keep the router's rotation, so equal deployments share.
 *
 * - `simple-shuffle` (the default): the router's weighted rotation as it is.
 * - `least-busy`: fewest calls in flight, across the whole cluster (one Redis read per request).
 * - `usage-based-routing-v2` (and `usage-based-routing`): fewest tokens in the sliding minute, across the cluster
 *   (one Redis read per request); a deployment's own `rpm`/`tpm` are enforced by the admission either way.
 * - `latency-based-routing`: lowest latency to the first byte, as the cluster measured it (from memory); those
 *   within `lowest_latency_buffer` of the fastest share traffic; a deployment never measured is tried first.
 * - `cost-based-routing`: cheapest per token (input + output price).
 */
export interface RoutingStrategy {
  readonly name: RoutingStrategyName;
  /** Every attempt is admitted on its deployment's level (counted there), limits or not: the strategy reads it. */
  readonly tracksLoad: boolean;
  /** The router's list, first choice first, reordered by the strategy. */
  order(list: ModelDeployment[]): ModelDeployment[] | Promise<ModelDeployment[]>;
}

export function routingStrategy(settings: RouterSettings, load: DeploymentLoad): RoutingStrategy {
  switch (settings.strategy) {
    case "simple-shuffle":
      return { name: "simple-shuffle", tracksLoad: false, order: (list) => list };
    case "cost-based-routing":
      return { name: "cost-based-routing", tracksLoad: false, order: (list) => byFirstGroup(list, (g) => sortedBy(g, pricePerToken)) };
    case "latency-based-routing":
      return {
        name: "latency-based-routing",
        tracksLoad: false,
        order: (list) => byFirstGroup(list, (g) => fastestFirst(g, (d) => load.latencyMs(d.id), settings.lowestLatencyBuffer)),
      };
    case "least-busy":
      return { name: "least-busy", tracksLoad: true, order: (list) => byLoad(list, load, (l) => l.inFlight) };
    case "usage-based-routing":
    case "usage-based-routing-v2":
      return { name: "usage-based-routing-v2", tracksLoad: true, order: (list) => byLoad(list, load, (l) => l.tokens) };
  }
}

/** The length of the first order group (the router lists groups lowest order first). */
function firstGroupLength(list: readonly ModelDeployment[]): number {
  let n = 1;
  while (n < list.length && list[n]!.order === list[0]!.order) n++;
  return n;
}

function byFirstGroup(list: ModelDeployment[], reorder: (group: ModelDeployment[]) => ModelDeployment[]): ModelDeployment[] {
  const n = firstGroupLength(list);
  if (n < 2) return list;
  const group = reorder(list.slice(0, n));
  return n === list.length ? group : [...group, ...list.slice(n)];
}

async function byLoad(list: ModelDeployment[], load: DeploymentLoad, measure: (l: { inFlight: number; tokens: number }) => number): Promise<ModelDeployment[]> {
  const n = firstGroupLength(list);
  if (n < 2) return list;
  const group = list.slice(0, n);
  const loads = await load.loads(group);
  const measured = new Map(group.map((d, i) => [d, measure(loads[i]!)]));
  const sorted = sortedBy(group, (d) => measured.get(d)!);
  return n === list.length ? sorted : [...sorted, ...list.slice(n)];
}

/** A stable sort: equal deployments keep the router's rotation. */
function sortedBy(group: ModelDeployment[], key: (d: ModelDeployment) => number): ModelDeployment[] {
  return group
    .map((d, i) => ({ d, i, k: key(d) }))
    .sort((a, b) => a.k - b.k || a.i - b.i)
    .map((e) => e.d);
}

function pricePerToken(d: ModelDeployment): number {
  return d.inputCostPerToken + d.outputCostPerToken;
}

/**
 * Deployments within `buffer` (a fraction) of the fastest keep the router's rotation among them, ahead of the
 * rest, which follow fastest first. Never measured counts as fastest: it is how a deployment gets measured.
 */
function fastestFirst(group: ModelDeployment[], latency: (d: ModelDeployment) => number | undefined, buffer: number): ModelDeployment[] {
  const ms = (d: ModelDeployment) => latency(d) ?? 0;
  const best = Math.min(...group.map(ms));
  const limit = best * (1 + buffer);
  return sortedBy(group, (d) => (ms(d) <= limit ? best : ms(d)));
}
