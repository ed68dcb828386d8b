/**
 * Every Redis key Gatehouse uses is built here and nowhere else (STYLE.md: BullMQ's queue-keys).
 * The prefix namespaces one deployment (and one test file) from another on a shared Redis.
 */
export class RedisKeys {
  constructor(readonly prefix: string) {}

  /** L2 auth record (or tombstone) for one token hash. Owner: auth/l2-cache. */
  authRecord(tokenHash: string): string {
    return `${this.prefix}auth:${tokenHash}`;
  }

  /** Redlock resource serialising rotations of one key across replicas. Owner: redis/rotation-lock. */
  rotationLock(tokenHash: string): string {
    return `${this.prefix}lock:rotate:${tokenHash}`;
  }

  /** Pattern matching every key of this deployment, for test cleanup and admin tools. */
  all(): string {
    return `${this.prefix}*`;
  }
}
