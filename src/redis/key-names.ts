import { createHash } from "node:crypto";

/**
 * Every Redis key Gatehouse uses is built here and nowhere else (as BullMQ does in its queue-keys).
 * The prefix namespaces one deployment (and one test file) from another on a shared Redis.
 */
export class RedisKeys {
  /**
   * The database history (coherence/coherence.ts lineage) the keys below belong to, as a short tag. L2 records
   * and tombstones carry versions, the L2 cursor carries event ids, and ledgers carry the spend of one database:
   * none of them may be read or compared in another history (docs/coherence.md, "Engine failover"), so each
   * lineage has its own names and the old ones expire unread. Set by coherence before anything is read.
   */
  private lineageTag = "unset";

  constructor(readonly prefix: string) {}

  /** Moves every lineage-bound key to the namespace of `lineage` (its short hash). */
  useLineage(lineage: string): void {
    this.lineageTag = createHash("sha256").update(lineage).digest("base64url").slice(0, 10);
  }

  get lineage(): string {
    return this.lineageTag;
  }

  /** L2 auth record (or tombstone) for one token hash. Owner: auth/l2-cache. */
  authRecord(tokenHash: string): string {
    return `${this.prefix}${this.lineageTag}:auth:${tokenHash}`;
  }

  /**
   * The L2 state cursor: which server it was verified on and through which event id every tombstone is in
   * this Redis. Owner: coherence/l2-guard.
   */
  l2State(): string {
    return `${this.prefix}${this.lineageTag}:l2:state`;
  }

  /** Redlock resource serialising rotations of one key across replicas. Owner: redis/rotation-lock. */
  rotationLock(tokenHash: string): string {
    return `${this.prefix}lock:rotate:${tokenHash}`;
  }

  /**
   * The live ledger and rate counters of one level (limits/admission.ts, SpendOwner.ledger): a key's by
   * key_id (stable across rotations, so an old key in its grace and the new key share them), a team's, a
   * user's, a team member's. One admission touches every level of a request in one script: Gatehouse runs
   * on one Redis (primary, with replicas or Sentinel), not on Redis Cluster. Owner: limits/redis-limiter.
   */
  limits(ledger: string): { ledger: string; inflight: string; reserved: string; requests: string; tokens: string } {
    const base = `${this.prefix}${this.lineageTag}:limits:{${ledger}}:`;
    return { ledger: `${base}ledger`, inflight: `${base}inflight`, reserved: `${base}reserved`, requests: `${base}rpm`, tokens: `${base}tpm` };
  }

  /**
   * The cluster's routing state (proxy/deployment-health.ts): a deployment's failures in the current window, the
   * cooldowns of every deployment, and the channel that announces a cooldown. Not bound to a database history:
   * it is about upstreams. Owner: proxy/deployment-health.
   */
  routerFailures(deploymentId: string): string {
    return `${this.prefix}router:{${deploymentId}}:failures`;
  }

  routerCooldowns(): string {
    return `${this.prefix}router:cooldowns`;
  }

  routerChannel(): string {
    return `${this.prefix}router:cooldown-started`;
  }

  /** Every deployment's latency as the cluster measured it (latency-based routing). Owner: proxy/deployment-load. */
  routerLatency(): string {
    return `${this.prefix}router:latency`;
  }

  /** Prefix of the rounds of background health checks replicas claim (one replica per round). Owner: proxy/health-prober. */
  healthRounds(): string {
    return `${this.prefix}router:health-round:`;
  }

  /** The last health check of every deployment, as the replica that ran it wrote it. Owner: proxy/health-prober. */
  healthResults(): string {
    return `${this.prefix}router:health`;
  }

  /**
   * Admin UI login attempts from one client address (an IPv4 address, or an IPv6 /64) in the current window. Not
   * bound to a database history: it is about who knocks. Owner: auth/login-throttle.
   */
  uiLoginAttempts(client: string): string {
    return `${this.prefix}ui-login:${client}`;
  }
}
