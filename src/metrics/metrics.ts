import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import { type BucketCounts, CountedHistogram } from "./counted-histogram.js";

export interface MetricSources {
  authLevels: () => Record<string, number>;
  eventsReplayed: () => number;
  notifications: () => number;
  listenerUp: () => boolean;
  breakerStates: () => Record<string, "closed" | "open" | "half-open">;
  spendCharged: () => number;
  /** Refusals keyed "<reason> <level>" (limit-enforcer.ts). */
  limitRejections: () => Record<string, number>;
  /** Admissions of keys with limits by how they were made: redis (own round trip), prefetched, local. */
  limitAdmissions: () => Record<string, number>;
  /** L2 records that failed their authentication check (written to Redis by something else). */
  l2Forged: () => number;
  /** Postgres calls recovered or contended, by kind (store/database.ts counters). */
  postgresRecoveries: () => Record<string, number>;
  /** Unknown keys answered without a database look-up (the token filter). */
  unknownKeysFiltered: () => number;
  /** Whole-L1 drops (events needed to keep it current were pruned) and failed catch-ups of the event table. */
  l1Drops: () => number;
  catchUpFailures: () => number;
  /** Settlements of limited requests that could not reach Redis. */
  settleFailures: () => number;
  /** Spend log rows by outcome: recorded, written, journaled, replayed, dropped (spendlogs/spend-log-writer.ts). */
  spendLogRows: () => Record<string, number>;
  /** Failed attempts by deployment id and kind of failure (proxy/deployment-health.ts). */
  deploymentFailures: () => Array<{ deployment: string; kind: string; count: number }>;
  /** Deployments cooling down now, by id, with the seconds left. */
  deploymentsCooling: () => Array<{ deployment: string; secondsLeft: number }>;
  /** Routing state is shared by the cluster (false: this replica counts failures alone, Redis unreachable). */
  routingShared: () => boolean;
  /** Attempts this replica made, by deployment id and outcome: answered, a kind of failure, or at_capacity. */
  deploymentAttempts: () => Array<{ deployment: string; outcome: string; count: number }>;
  /** Each deployment's latency to the first byte as the cluster measured it (seconds), and its calls in flight here. */
  deploymentLatency: () => Array<{ deployment: string; seconds: number }>;
  deploymentsInFlight: () => Array<{ deployment: string; count: number }>;
  /** Soft budgets this replica's spend flushes took keys across (each crossing is told by one replica). */
  softBudgetAlerts: () => number;
}

/** What a scrape reads before readFrom: nothing yet. */
const NO_SOURCES: MetricSources = {
  authLevels: () => ({}),
  eventsReplayed: () => 0,
  notifications: () => 0,
  listenerUp: () => false,
  breakerStates: () => ({}),
  spendCharged: () => 0,
  limitRejections: () => ({}),
  limitAdmissions: () => ({}),
  l2Forged: () => 0,
  unknownKeysFiltered: () => 0,
  l1Drops: () => 0,
  catchUpFailures: () => 0,
  settleFailures: () => 0,
  spendLogRows: () => ({}),
  deploymentFailures: () => [],
  deploymentsCooling: () => [],
  routingShared: () => true,
  deploymentAttempts: () => [],
  deploymentLatency: () => [],
  deploymentsInFlight: () => [],
  softBudgetAlerts: () => 0,
  postgresRecoveries: () => ({}),
};

const BREAKER_STATE = { closed: 0, "half-open": 1, open: 2 } as const;
// Seconds: sub-millisecond buckets for the gateway's own overhead, up to minutes for streams.
const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];
// The gateway's own time per request: tens of microseconds when all is well, so the buckets start at 10 µs. 50 µs and
// 1 ms are boundaries, so "p50 ≤ 50 µs" and "p99 ≤ 1 ms" are read exactly from the counts (bench/proxy-overhead.mjs).
export const OWN_TIME_BUCKETS = [0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1];
const LAG_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2, 5];

/**
 * Prometheus metrics of one replica, on a registry of its own so several gateways in one
 * process (tests) do not share series. Request-path code only increments counters and observes
 * histograms; everything that already has a counter somewhere (cache levels, breakers, the listener,
 * the limiter) is read when Prometheus scrapes, through `collect`, at no cost per request.
 */
export class Metrics {
  readonly registry = new Registry();
  private readonly latency: CountedHistogram<"route">;
  private readonly overhead: CountedHistogram<"route">;
  private readonly lag: Histogram;
  private readonly rotations: Counter<"outcome">;
  /** Upstream attempts by the way the relay made them (proxy/straight-attempt.ts). */
  private readonly attemptWays = { straight: 0, general: 0 };
  /** Route patterns are a small fixed set (unmatched paths share one label), so this map stays small. */
  private readonly routes = new Map<string, RouteRecorder>();

  /** Where the snapshot counters read from; given once the parts that keep them exist (readFrom). */
  private sources: MetricSources | undefined;

  constructor() {
    const sources = { ...NO_SOURCES } as MetricSources;
    for (const name of Object.keys(NO_SOURCES) as Array<keyof MetricSources>)
      (sources as unknown as Record<string, unknown>)[name] = () => ((this.sources ?? NO_SOURCES)[name] as () => unknown)();
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry, prefix: "gatehouse_" });
    // The three series every request adds to are counted in plain numbers by its route's recorder and read here at
    // scrape time: prom-client hashes a series' labels on every inc() and observe(), a microsecond or two a request.
    snapshotCounter(registers, "gatehouse_requests_total", "HTTP requests by route, model and status", ["route", "model", "status"], () => {
      const cells: Array<[Record<string, string>, number]> = [];
      for (const [route, recorder] of this.routes)
        for (const [model, byStatus] of recorder.counts) for (const [status, cell] of byStatus) cells.push([{ route, model, status: String(status) }, cell.n]);
      return cells;
    });
    this.latency = new CountedHistogram({ name: "gatehouse_request_duration_seconds", help: "Total request latency", buckets: LATENCY_BUCKETS, registers }, "route");
    this.overhead = new CountedHistogram(
      {
        name: "gatehouse_overhead_duration_seconds",
        help: "The gateway's own time per relayed request: from the request's arrival to the upstream call, plus from the upstream answer's last byte to the client's (model API routes)",
        buckets: OWN_TIME_BUCKETS,
        registers,
      },
      "route",
    );
    this.lag = new Histogram({ name: "gatehouse_invalidation_lag_seconds", help: "Key change commit to applied on this replica", buckets: LAG_BUCKETS, registers });
    this.rotations = new Counter({ name: "gatehouse_rotations_total", help: "Key regenerations by outcome", labelNames: ["outcome"], registers });
    // Counted in plain numbers and read at scrape time: a prom-client child's inc() hashes its labels every time,
    // which on the request path cost a microsecond a request.
    snapshotCounter(
      registers,
      "gatehouse_relay_attempts_total",
      "Upstream attempts by the way the relay made them: straight (from the call's callbacks) or general",
      ["way"],
      () => [
        [{ way: "straight" }, this.attemptWays.straight],
        [{ way: "general" }, this.attemptWays.general],
      ],
    );

    snapshotCounter(registers, "gatehouse_auth_cache_total", "Authentications by the level that answered (l1, l2, db, l1-static, misses, unavailable)", ["level"], () =>
      Object.entries(sources.authLevels()).map(([level, n]) => [{ level }, n]),
    );
    snapshotCounter(registers, "gatehouse_events_replayed_total", "Key events applied from the table (catch-up) rather than from a notification", [], () => [
      [{}, sources.eventsReplayed()],
    ]);
    snapshotCounter(registers, "gatehouse_event_notifications_total", "Key event notifications received", [], () => [[{}, sources.notifications()]]);
    snapshotCounter(registers, "gatehouse_l2_forged_records_total", "L2 records that failed their authentication check and were ignored", [], () => [[{}, sources.l2Forged()]]);
    snapshotCounter(registers, "gatehouse_unknown_keys_filtered_total", "Unknown keys refused by the token filter without a database look-up", [], () => [
      [{}, sources.unknownKeysFiltered()],
    ]);
    snapshotCounter(registers, "gatehouse_l1_drops_total", "Times the whole L1 was dropped because the events needed to keep it current were pruned", [], () => [
      [{}, sources.l1Drops()],
    ]);
    snapshotCounter(registers, "gatehouse_catch_up_failures_total", "Catch-ups of the event table that failed (retried every heartbeat)", [], () => [
      [{}, sources.catchUpFailures()],
    ]);
    snapshotCounter(registers, "gatehouse_limit_settle_failures_total", "Settlements of limited requests that could not reach Redis (reservations expire instead)", [], () => [
      [{}, sources.settleFailures()],
    ]);
    snapshotCounter(
      registers,
      "gatehouse_postgres_recoveries_total",
      "Postgres calls that failed and were dealt with, by kind: retry (run again after a lost connection, a timeout or a conflict), conflict (a deadlock or serialization failure met; it rolled back), commit_verified (a COMMIT cut off and found landed), commit_rerun (found not landed and run again)",
      ["kind"],
      () => Object.entries(sources.postgresRecoveries()).map(([kind, n]) => [{ kind }, n]),
    );
    snapshotCounter(registers, "gatehouse_spend_total", "Spend charged by this replica (config currency)", [], () => [[{}, sources.spendCharged()]]);
    snapshotCounter(
      registers,
      "gatehouse_spend_log_rows_total",
      "Spend log rows by outcome: recorded (a request ended), written (to Postgres), journaled (kept locally while Postgres could not take them), replayed (from the journal), dropped (lost: the target is none)",
      ["outcome"],
      () => Object.entries(sources.spendLogRows()).map(([outcome, n]) => [{ outcome }, n]),
    );
    snapshotCounter(
      registers,
      "gatehouse_limit_rejections_total",
      "Requests refused by a budget or rate limit, by reason and by the level that refused (key, team_member, user, team)",
      ["reason", "level"],
      () =>
        Object.entries(sources.limitRejections()).map(([both, n]) => {
          const [reason = "", level = ""] = both.split(" ");
          return [{ reason, level }, n];
        }),
    );
    snapshotCounter(
      registers,
      "gatehouse_limit_admissions_total",
      "Requests of keys with limits admitted, by path: redis (its own round trip), prefetched (ready before it came), local (fallback or embedded)",
      ["path"],
      () => Object.entries(sources.limitAdmissions()).map(([path, n]) => [{ path }, n]),
    );
    snapshotCounter(
      registers,
      "gatehouse_deployment_failures_total",
      "Failed attempts on a deployment, by its id and the kind of failure (docs/routing.md)",
      ["deployment", "kind"],
      () => sources.deploymentFailures().map((f) => [{ deployment: f.deployment, kind: f.kind }, f.count]),
    );
    new Gauge({
      name: "gatehouse_deployment_cooldown_seconds",
      help: "Seconds left of each deployment's cooldown, as the cluster's routing state says (absent: not cooling)",
      labelNames: ["deployment"],
      registers,
      collect() {
        this.reset();
        for (const c of sources.deploymentsCooling()) this.set({ deployment: c.deployment }, c.secondsLeft);
      },
    });
    snapshotCounter(
      registers,
      "gatehouse_soft_budget_alerts_total",
      "Keys this replica's spend flushes took across their soft budget (each crossing is counted by one replica, once per budget period)",
      [],
      () => [[{}, sources.softBudgetAlerts()]],
    );
    snapshotCounter(
      registers,
      "gatehouse_deployment_attempts_total",
      "Attempts on a deployment made by this replica, by its id and outcome: answered, the kind of failure, or at_capacity (its own rpm, tpm or parallel limit; not called)",
      ["deployment", "outcome"],
      () => sources.deploymentAttempts().map((a) => [{ deployment: a.deployment, outcome: a.outcome }, a.count]),
    );
    new Gauge({
      name: "gatehouse_deployment_latency_seconds",
      help: "Each deployment's time to the first byte of an answer, averaged over the cluster's recent attempts (latency-based routing reads it)",
      labelNames: ["deployment"],
      registers,
      collect() {
        this.reset();
        for (const l of sources.deploymentLatency()) this.set({ deployment: l.deployment }, l.seconds);
      },
    });
    new Gauge({
      name: "gatehouse_deployment_in_flight",
      help: "Calls in flight on each deployment from this replica",
      labelNames: ["deployment"],
      registers,
      collect() {
        this.reset();
        for (const f of sources.deploymentsInFlight()) this.set({ deployment: f.deployment }, f.count);
      },
    });
    new Gauge({
      name: "gatehouse_routing_shared",
      help: "1 while deployment failures and cooldowns are shared by the cluster through Redis; 0 while this replica keeps them alone",
      registers,
      collect() {
        this.set(sources.routingShared() ? 1 : 0);
      },
    });
    new Gauge({
      name: "gatehouse_listener_up",
      help: "1 while the LISTEN connection for key events is up",
      registers,
      collect() {
        this.set(sources.listenerUp() ? 1 : 0);
      },
    });
    new Gauge({
      name: "gatehouse_breaker_state",
      help: "Circuit breaker state by dependency: 0 closed, 1 half-open, 2 open",
      labelNames: ["dependency"],
      registers,
      collect() {
        for (const [dependency, state] of Object.entries(sources.breakerStates())) this.set({ dependency }, BREAKER_STATE[state]);
      },
    });
  }

  /** The counters kept elsewhere (cache levels, breakers, the listener, the limiter), read at scrape time. */
  readFrom(sources: MetricSources): void {
    this.sources = sources;
  }

  /**
   * The recorder of one route's finished requests. Its label children are made once and kept: prom-client
   * otherwise hashes a label object on every increment, on every request.
   */
  route(route: string): RouteRecorder {
    let recorder = this.routes.get(route);
    if (!recorder) {
      recorder = new RouteRecorder(this.latency.child(route), this.overhead.child(route), route.endsWith("/regenerate") ? this.rotations : undefined);
      this.routes.set(route, recorder);
    }
    return recorder;
  }

  /** One finished request. `ownSeconds` is set on model API routes whose answer came from the upstream. */
  request(route: string, model: string | undefined, status: number, seconds: number, ownSeconds: number | undefined): void {
    this.route(route).finished(model, status, seconds, ownSeconds);
  }

  /** One upstream attempt, made `way` (docs/performance.md, "The straight path"). */
  relayAttempt(way: "straight" | "general"): void {
    this.attemptWays[way]++;
  }

  invalidationLag(ms: number): void {
    this.lag.observe(ms / 1000);
  }

  render(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}

/** Finished requests of one route: counted by model and status (cells made on first use), and timed. */
export class RouteRecorder {
  /** Requests by model ("" for none) and status, read at scrape time as gatehouse_requests_total. */
  readonly counts = new Map<string, Map<number, { n: number }>>();

  constructor(
    private readonly latency: BucketCounts,
    private readonly overhead: BucketCounts,
    private readonly rotations: Counter<"outcome"> | undefined,
  ) {}

  finished(model: string | undefined, status: number, seconds: number, ownSeconds: number | undefined): void {
    const label = model ?? "";
    let byStatus = this.counts.get(label);
    if (!byStatus) {
      byStatus = new Map();
      this.counts.set(label, byStatus);
    }
    let cell = byStatus.get(status);
    if (!cell) {
      cell = { n: 0 };
      byStatus.set(status, cell);
    }
    cell.n++;
    this.latency.observe(seconds);
    if (ownSeconds !== undefined) this.overhead.observe(ownSeconds);
    this.rotations?.inc({ outcome: rotationOutcome(status) });
  }
}

function rotationOutcome(status: number): string {
  if (status === 200) return "committed";
  if (status === 409) return "conflict";
  if (status === 404) return "not_found";
  if (status >= 400 && status < 500) return "rejected";
  if (status === 503) return "unavailable";
  return "error";
}

/** A counter whose value lives elsewhere: set from the source at scrape time. */
function snapshotCounter(registers: Registry[], name: string, help: string, labelNames: string[], read: () => Array<[Record<string, string>, number]>): void {
  new Counter({
    name,
    help,
    labelNames,
    registers,
    collect() {
      this.reset();
      for (const [labels, value] of read()) if (value > 0) this.inc(labels, value);
    },
  });
}
