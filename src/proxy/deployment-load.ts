import type { ModelDeployment } from "../config/settings.js";
import type { Logger } from "../logger.js";
import { ledgerOf } from "../limits/admission.js";
import type { GatehouseRedis } from "../redis/client.js";
import type { RedisKeys } from "../redis/key-names.js";
import { Periodic } from "../timers/periodic.js";

/**
 * How loaded and how fast each deployment is, for the routing strategies that choose by it (routing-strategy.ts;
 * docs/routing.md, "Shared state").
 *
 * - Calls in flight and tokens this minute are read from the deployment's limits level in Redis, where every
 *   replica's admission records each attempt and its settle removes it (limits-reserve.lua): one read per request,
 *   of the whole cluster, when the strategy needs it (router-load.lua).
 * - Latency is measured by each replica (time to the answer's first byte) and merged into one cluster-wide average
 *   in Redis every `syncIntervalMs` (router-latency.lua); the request path reads the last merged figures from memory.
 * - Without Redis, each replica's own counts and latencies stand in (`shared` false: a metric and /debug/routing say so).
 */
export interface DeploymentLoadOptions {
  redis: GatehouseRedis | null;
  keys: RedisKeys;
  logger: Logger;
  syncIntervalMs?: number;
}

/** How much one sync's mean moves the cluster's average latency. */
const LATENCY_WEIGHT = 0.3;
/** The cluster's latencies are forgotten after an hour without traffic (a deployment gone, a cluster stopped). */
const LATENCY_TTL_MS = 3_600_000;

export interface Load {
  inFlight: number;
  /** Tokens in the sliding minute. */
  tokens: number;
}

export class DeploymentLoad {
  /** This replica's calls in flight per deployment (least-busy without Redis; /debug/routing). */
  private readonly inFlightHere = new Map<string, number>();
  /** Latencies seen here since the last sync, per deployment: their sum and count. */
  private pending = new Map<string, { sum: number; count: number }>();
  /** The cluster's latency per deployment as last merged (or this replica's own without Redis), ms. */
  private clusterLatency = new Map<string, number>();
  /** The latency sync every `syncIntervalMs` (with Redis only). */
  private loop: Periodic | null = null;
  /** Attempts by deployment and outcome, on this replica (metrics). */
  private readonly outcomes = new Map<string, Map<string, number>>();
  /** False while the last exchange with Redis failed: loads and latencies are this replica's own. */
  shared = true;
  readonly counters = { loadReads: 0, loadReadFailures: 0, latencySyncs: 0 };

  constructor(private readonly o: DeploymentLoadOptions) {
    if (!o.redis) this.shared = false;
  }

  start(): void {
    if (!this.o.redis || this.loop) return;
    this.loop = new Periodic({
      logger: this.o.logger,
      intervalMs: this.o.syncIntervalMs ?? 1_000,
      pass: () => this.sync(),
      failureMessage: "syncing deployment latencies failed; retrying at the next interval",
    });
    this.loop.start();
  }

  async stop(): Promise<void> {
    await this.loop?.stop();
    this.loop = null;
  }

  /** An attempt on `id` began / ended on this replica. */
  began(id: string): void {
    this.inFlightHere.set(id, (this.inFlightHere.get(id) ?? 0) + 1);
  }

  ended(id: string): void {
    const n = (this.inFlightHere.get(id) ?? 1) - 1;
    if (n <= 0) this.inFlightHere.delete(id);
    else this.inFlightHere.set(id, n);
  }

  /** An attempt on `id` began answering `ms` after it was sent. */
  answeredIn(id: string, ms: number): void {
    const p = this.pending.get(id);
    if (p) {
      p.sum += ms;
      p.count++;
    } else {
      this.pending.set(id, { sum: ms, count: 1 });
    }
    // Without Redis the replica's own average is the figure routing reads.
    if (!this.o.redis) this.clusterLatency.set(id, blend(this.clusterLatency.get(id), ms));
  }

  /** The deployment's latency (ms) as the cluster measured it; undefined before anything was measured. */
  latencyMs(id: string): number | undefined {
    return this.clusterLatency.get(id);
  }

  /** Each deployment's load across the cluster (Redis), or this replica's own when Redis does not answer. */
  async loads(deployments: readonly ModelDeployment[]): Promise<Load[]> {
    const { redis, keys } = this.o;
    if (redis) {
      try {
        const names: string[] = [];
        for (const d of deployments) {
          const k = keys.limits(ledgerOf("deployment", d.id));
          names.push(k.inflight, k.tokens);
        }
        const flat = await redis.routerLoad(names.length, ...names);
        this.counters.loadReads++;
        this.shared = true;
        return deployments.map((_, i) => ({ inFlight: Number(flat[2 * i]), tokens: Number(flat[2 * i + 1]) }));
      } catch {
        this.counters.loadReadFailures++;
        this.shared = false;
      }
    }
    return deployments.map((d) => ({ inFlight: this.inFlightHere.get(d.id) ?? 0, tokens: 0 }));
  }

  /** An attempt on `id` ended so: answered, a kind of failure, or at_capacity (metrics). */
  outcome(id: string, outcome: string): void {
    let byOutcome = this.outcomes.get(id);
    if (!byOutcome) {
      byOutcome = new Map();
      this.outcomes.set(id, byOutcome);
    }
    byOutcome.set(outcome, (byOutcome.get(outcome) ?? 0) + 1);
  }

  attemptCounts(): Array<{ deployment: string; outcome: string; count: number }> {
    const out: Array<{ deployment: string; outcome: string; count: number }> = [];
    for (const [deployment, byOutcome] of this.outcomes) for (const [outcome, count] of byOutcome) out.push({ deployment, outcome, count });
    return out;
  }

  /** Every deployment's latency as last merged (metrics). */
  latencies(): Array<{ id: string; ms: number }> {
    return [...this.clusterLatency].map(([id, ms]) => ({ id, ms }));
  }

  /** This replica's calls in flight per deployment (/debug/routing). */
  inFlightOnThisReplica(): ReadonlyMap<string, number> {
    return this.inFlightHere;
  }

  /** Sends this replica's latencies since the last sync and reads back the cluster's. */
  async sync(): Promise<void> {
    const { redis, keys } = this.o;
    if (!redis) return;
    const seen = this.pending;
    this.pending = new Map();
    const args: Array<string | number> = [];
    for (const [id, p] of seen) args.push(id, p.sum / p.count);
    try {
      const flat = await redis.routerLatency(keys.routerLatency(), LATENCY_WEIGHT, LATENCY_TTL_MS, ...args);
      const merged = new Map<string, number>();
      for (let i = 0; i + 1 < flat.length; i += 2) merged.set(flat[i]!, Number(flat[i + 1]));
      this.clusterLatency = merged;
      this.counters.latencySyncs++;
      this.shared = true;
    } catch {
      // What was not sent is blended into this replica's own figures, so routing keeps learning meanwhile.
      for (const [id, p] of seen) this.clusterLatency.set(id, blend(this.clusterLatency.get(id), p.sum / p.count));
      this.shared = false;
    }
  }
}

function blend(old: number | undefined, seen: number): number {
  return old === undefined ? seen : old * (1 - LATENCY_WEIGHT) + seen * LATENCY_WEIGHT;
}
