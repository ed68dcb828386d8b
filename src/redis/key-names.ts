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
   * The live ledger and rate counters of one key, by key_id (stable across rotations, so an old key in
   * its grace and the new key share them). One hash tag per key: a Lua script may touch them all even
   * on Redis Cluster. Owner: limits/redis-limiter.
   */
  limits(keyId: string): { ledger: string; inflight: string; reserved: string; requests: string; tokens: string } {
    const base = `${this.prefix}limits:{${keyId}}:`;
    return { ledger: `${base}ledger`, inflight: `${base}inflight`, reserved: `${base}reserved`, requests: `${base}rpm`, tokens: `${base}tpm` };
  }
}
