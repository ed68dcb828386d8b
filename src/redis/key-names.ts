/**
 * Every Redis key Gatehouse uses is built here and nowhere else (as BullMQ does in its queue-keys).
 * The prefix namespaces one deployment (and one test file) from another on a shared Redis.
 */
export class RedisKeys {
  constructor(readonly prefix: string) {}

  /** L2 auth record (or tombstone) for one token hash. Owner: auth/l2-cache. */
  authRecord(tokenHash: string): string {
    return `${this.prefix}auth:${tokenHash}`;
  }

  /**
   * The L2 state cursor: which server it was verified on and through which event id every tombstone is in
   * this Redis. Owner: coherence/l2-guard.
   */
  l2State(): string {
    return `${this.prefix}l2:state`;
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
    const base = `${this.prefix}limits:{${ledger}}:`;
    return { ledger: `${base}ledger`, inflight: `${base}inflight`, reserved: `${base}reserved`, requests: `${base}rpm`, tokens: `${base}tpm` };
  }
}
