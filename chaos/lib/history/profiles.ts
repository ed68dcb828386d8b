import type { AdminKind } from "./history.js";
import { PG_FAILOVER_LOSSY, PG_SWITCHOVER, REDIS_FAILOVER, SENTINEL_FAILOVER } from "./faults.js";

/**
 * One history-checker run: three real replica processes, each reaching Postgres through a fault-injecting TCP
 * proxy of its own (LISTEN connections through one more, Redis through another, Redis a server of the run's
 * own), concurrent clients issuing random admin changes and authenticating every token ever issued on every
 * replica, and faults injected one at a time while they run. Bounded in time and in count.
 *
 * With failovers among its faults, the run's Postgres is a primary with a streaming standby of its own
 * (test/support/pg-cluster.mjs) and its Redis has a replica syncing through a proxy; each failover promotes the
 * standby (replica), moves every proxy to it, and builds a new standby (replica) for the next one. A Sentinel
 * segment (`redis: "sentinel"`) runs the replicas on a Sentinel-managed Redis instead, without Redis proxies.
 */
export interface Profile {
  name: string;
  durationMs: number;
  /** Stop once this many requests were recorded. */
  maxOps: number;
  adminWorkers: number;
  authWorkers: number;
  /** Keys at the start; more are generated as the run goes. */
  keys: number;
  /** Fault kinds to cycle through, by name (all of FAULTS when absent). */
  faults?: string[];
  /** Relative weights of the admin operations. */
  mix?: Partial<Record<AdminChoice, number>>;
  /** Replicas the slowing fault may pick (all when absent). */
  slowable?: string[];
  /** Send most authentications to a replica under a slowing fault while one is (the self-check of joined reads). */
  authFocusOnSlowed?: boolean;
  /** Requests each authenticating client keeps in flight (1 when absent: it waits for each answer). */
  authInFlight?: number;
  /** Pause of each admin client between its requests (ms, at most; random below it). */
  adminPauseMs?: number;
  /** The least pause of each admin client between its requests (ms; 0 when absent). */
  adminPauseMinMs?: number;
  /** Extra environment for the replicas (the test-build switch that reinstates a known bug). */
  env?: Record<string, string>;
  /**
   * Fault kinds fired after every other fault, in turn (the long profile's failovers: many more of them than one
   * per cycle). Kinds listed here are left out of the cycle itself.
   */
  interleave?: string[];
  /** An interleaved fault after every this many others (1 when absent). */
  interleaveEvery?: number;
  /** Budget keys being spent at any moment (priced requests until each is spent; then another); 0 when absent. */
  budgetKeys?: number;
  /** Clients sending budget keys priced requests. */
  budgetClients?: number;
  /** Pause of each budget client between its requests (ms, at most; random below it). */
  budgetPauseMs?: number;
  /** A budget key's max_budget, in priced requests (30 when absent). */
  budgetRequests?: number;
  /** How long a Redis failover keeps the replica from syncing before the primary dies (ms; 1,500 when absent). */
  redisLagMs?: number;
  /** Postgres a primary with a standby of its own even without failovers among the faults (to compare costs). */
  pgPair?: boolean;
  /** "sentinel": Redis is a master, a replica and three Sentinels, found by the replicas through REDIS_SENTINELS. */
  redis?: "proxied" | "sentinel";
  /** Clients sending requests to the routed models while their deployments fail on command (routing.ts); 0 when absent. */
  routingClients?: number;
}

/**
 * "toggle": block the key if the client last saw it unblocked, else unblock it (every change flips its answer);
 * "team_toggle": the same for a team.
 */
export type AdminChoice = AdminKind | "race" | "invalid" | "toggle" | "team_toggle";

export const DEFAULT_MIX: Record<AdminChoice, number> = {
  user_delete: 1,
  user_new: 0,
  team_new: 1,
  team_block: 3,
  team_unblock: 3,
  regenerate: 26,
  block: 9,
  unblock: 9,
  update: 12,
  delete: 4,
  generate: 6,
  end_grace: 7,
  reset_spend: 4,
  race: 8,
  invalid: 2,
  toggle: 0,
  team_toggle: 0,
  user_models: 2,
  team_models: 2,
  team_delete: 1,
  model_new: 2,
  model_update: 1,
  model_delete: 2,
};

/** A mix of only these operations: every other weight 0 (the self-check proofs, each shaped for one bug). */
export function onlyThese(weights: Partial<Record<AdminChoice, number>>): Record<AdminChoice, number> {
  return { ...(Object.fromEntries(Object.keys(DEFAULT_MIX).map((k) => [k, 0])) as Record<AdminChoice, number>), ...weights };
}

export const PROFILES: Record<string, Profile> = {
  short: { name: "short", durationMs: 62_000, maxOps: 200_000, adminWorkers: 3, authWorkers: 6, authInFlight: 3, keys: 8, budgetKeys: 2, budgetClients: 1, routingClients: 3 },
  long: {
    name: "long",
    durationMs: 720_000,
    maxOps: 300_000,
    authInFlight: 3,
    adminWorkers: 4,
    authWorkers: 8,
    keys: 12,
    budgetKeys: 2,
    budgetClients: 1,
    // A failover after every other fault of the cycle, in turn: Postgres clean, Redis, Postgres losing commits, Redis.
    interleave: [PG_SWITCHOVER, REDIS_FAILOVER, PG_FAILOVER_LOSSY, REDIS_FAILOVER],
    interleaveEvery: 2,
  },
};

/**
 * The Sentinel segment of a profile: the replicas find Redis through Sentinels, so the faults that act on the
 * per-replica Redis proxies cannot run in it; its own faults are the Sentinels' failover and a few that need no
 * Redis proxy. `npm test` and `npm run chaos` run it after the main run.
 */
export function sentinelSegment(profile: Profile): Profile {
  return {
    ...profile,
    name: `${profile.name}-sentinel`,
    durationMs: profile.name === "long" ? 60_000 : 8_000,
    redis: "sentinel",
    interleave: undefined,
    faults: [SENTINEL_FAILOVER, "a replica SIGKILLed and restarted", "Postgres connections cut (proxy)"],
  };
}
