import { DependencyUnavailableError, type DependencyBreaker } from "../faults/breaker.js";
import type { GatehouseRedis } from "../redis/client.js";
import type { RedisKeys } from "../redis/key-names.js";
import type { AuthRecord } from "./auth-record.js";

/**
 * L2: auth records in Redis, shared by every replica. Writes are version-guarded by Lua scripts
 * (l2-fill, l2-invalidate) so a slow fill can never overwrite a newer record or a tombstone.
 * Redis trouble is never an auth failure: every method degrades to "not cached", and while the Redis
 * breaker is open, L2 is skipped without waiting (issue 4).
 */

// A tombstone must outlive any fill still in flight; fills take milliseconds, a minute is ample.
const TOMBSTONE_TTL_SECONDS = 60;
// How many hashes whose tombstone could not be written we remember not to read from L2.
const MAX_DISTRUSTED = 100_000;

class L2AbsentError extends Error {}

export class L2Cache {
  /** Hashes whose tombstone write failed: L2 may still hold their old record, so it is not read for them. */
  private readonly distrusted = new Map<string, number>();

  constructor(
    /** Null without Redis (the embedded single replica): L2 is simply absent. */
    private readonly redis: GatehouseRedis | null,
    private readonly keys: RedisKeys,
    private readonly ttlSeconds: number,
    private readonly onError: (op: string, err: unknown) => void,
    private readonly breaker?: DependencyBreaker,
  ) {}

  private call<T>(op: (redis: GatehouseRedis) => Promise<T>): Promise<T> {
    const redis = this.redis;
    if (!redis) return Promise.reject(new L2AbsentError());
    return this.breaker ? this.breaker.run(() => op(redis)) : op(redis);
  }

  private failed(op: string, err: unknown): void {
    // An open breaker is already logged once by the breaker; do not log every skipped call.
    if (!(err instanceof DependencyUnavailableError) && !(err instanceof L2AbsentError)) this.onError(op, err);
  }

  async get(hash: string): Promise<AuthRecord | undefined> {
    if (this.distrusted.size > 0 && this.isDistrusted(hash)) return undefined;
    try {
      const value = await this.call((redis) => redis.get(this.keys.authRecord(hash)));
      if (!value) return undefined;
      const json = value.slice(value.indexOf("|") + 1);
      return json ? (JSON.parse(json) as AuthRecord) : undefined;
    } catch (err) {
      this.failed("get", err);
      return undefined;
    }
  }

  /**
   * True when L2 holds a record or tombstone for `hash` newer than `version`: proof that the key changed
   * after a copy of that version was taken. Used when Postgres cannot be asked (fail static).
   */
  async changedSince(hash: string, version: number): Promise<boolean> {
    try {
      const value = await this.call((redis) => redis.get(this.keys.authRecord(hash)));
      const stored = value ? Number(value.slice(0, value.indexOf("|"))) : Number.NaN;
      return stored > version;
    } catch (err) {
      this.failed("get", err);
      return false;
    }
  }

  /** Caches `record` under the hash it was looked up by (a deprecated key's hash maps to the active record). */
  async fill(hash: string, record: AuthRecord): Promise<void> {
    if (this.distrusted.size > 0 && this.isDistrusted(hash)) return;
    try {
      await this.call((redis) => redis.l2Fill(this.keys.authRecord(hash), record.version, JSON.stringify(record), this.ttlSeconds));
    } catch (err) {
      this.failed("fill", err);
    }
  }

  /** Tombstones every hash of one change at `version`, in one round trip. */
  async invalidate(hashes: readonly string[], version: number): Promise<void> {
    if (hashes.length === 0) return;
    try {
      await this.call((redis) => redis.l2Invalidate(hashes.length, ...hashes.map((h) => this.keys.authRecord(h)), version, TOMBSTONE_TTL_SECONDS));
    } catch (err) {
      this.failed("invalidate", err);
      if (!(err instanceof L2AbsentError)) for (const hash of hashes) this.distrust(hash);
    }
  }

  private distrust(hash: string): void {
    if (this.distrusted.size >= MAX_DISTRUSTED) this.distrusted.delete(this.distrusted.keys().next().value!);
    // A stale record can live in L2 at most its TTL; past that, reading it again is safe.
    this.distrusted.set(hash, Date.now() + this.ttlSeconds * 1000);
  }

  private isDistrusted(hash: string): boolean {
    const until = this.distrusted.get(hash);
    if (until === undefined) return false;
    if (until > Date.now()) return true;
    this.distrusted.delete(hash);
    return false;
  }
}
