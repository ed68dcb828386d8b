import { createHmac, hkdfSync, timingSafeEqual } from "node:crypto";
import { DependencyUnavailableError } from "../errors/errors.js";
import type { DependencyBreaker } from "../faults/breaker.js";
import type { GatehouseRedis } from "../redis/client.js";
import type { RedisKeys } from "../redis/key-names.js";
import type { CachedRecord } from "./auth-record.js";

// A tombstone must outlive any fill still in flight. Fills take milliseconds, and a fill whose caller gave up
// is never sent again on a new connection (redis/client.ts), so a minute is ample.
const TOMBSTONE_TTL_SECONDS = 60;

class L2AbsentError extends Error {}

/**
 * Records are authenticated (docs/security.md): `<version>|<mac>|<json>`, where mac = HMAC-SHA256 over the token
 * hash, the version and the JSON, with a key derived from the master key. A record nobody wrote through the
 * gateway — written by hand by anyone who can reach Redis — fails the check and is a miss, so Redis access alone
 * cannot mint a working key. Tombstones (`<version>|`) need no MAC: a forged one can only cause a miss.
 */
export function l2MacKey(masterKey: string): Buffer {
  return Buffer.from(hkdfSync("sha256", masterKey, "", "gatehouse l2 record mac v1", 32));
}

// Keys per l2-invalidate call of a repair: a page of events in a few calls, none long enough to stall Redis.
const REPAIR_KEYS_PER_CALL = 2_000;

/**
 * L2: auth records in Redis, shared by every replica. Writes are version-guarded by Lua scripts
 * (l2-fill, l2-invalidate) so a slow fill can never overwrite a newer record or a tombstone.
 * Redis trouble is never an auth failure: every method degrades to "not cached", and while the Redis
 * breaker is open, L2 is skipped without waiting.
 */
export class L2Cache {
  readonly counters = { forged: 0 };
  private forgedLogged = false;

  constructor(
    /** Null without Redis (the embedded single replica): L2 is simply absent. */
    private readonly redis: GatehouseRedis | null,
    private readonly keys: RedisKeys,
    private readonly ttlSeconds: number,
    private readonly onError: (op: string, err: unknown) => void,
    private readonly breaker: DependencyBreaker | undefined,
    private readonly macKey: Buffer,
    /** Told once when a record fails its check (someone wrote to Redis by hand, or another master key did). */
    private readonly onForged: (hash: string) => void = () => {},
    /** False while L2 may hold records older than an invalidation (coherence/l2-guard.ts): reads are misses. */
    private readonly trusted: () => boolean = () => true,
  ) {}

  private mac(hash: string, version: number | string, json: string): string {
    return createHmac("sha256", this.macKey).update(`${hash}|${version}|${json}`).digest("base64url");
  }

  private call<T>(op: (redis: GatehouseRedis) => Promise<T>): Promise<T> {
    const redis = this.redis;
    if (!redis) return Promise.reject(new L2AbsentError());
    return this.breaker ? this.breaker.run(() => op(redis)) : op(redis);
  }

  private failed(op: string, err: unknown): void {
    // An open breaker is already logged once by the breaker; do not log every skipped call.
    if (!(err instanceof DependencyUnavailableError) && !(err instanceof L2AbsentError)) this.onError(op, err);
  }

  async get(hash: string): Promise<CachedRecord | undefined> {
    if (!this.trusted()) return undefined;
    try {
      const value = await this.call((redis) => redis.get(this.keys.authRecord(hash)));
      if (!value) return undefined;
      const bar = value.indexOf("|");
      if (bar === value.length - 1) return undefined; // a tombstone
      const bar2 = value.indexOf("|", bar + 1);
      const version = value.slice(0, bar);
      const json = bar2 === -1 ? "" : value.slice(bar2 + 1);
      const given = bar2 === -1 ? "" : value.slice(bar + 1, bar2);
      const expected = this.mac(hash, version, json);
      if (given.length !== expected.length || !timingSafeEqual(Buffer.from(given), Buffer.from(expected))) {
        this.counters.forged++;
        if (!this.forgedLogged) {
          this.forgedLogged = true;
          this.onForged(hash);
        }
        return undefined;
      }
      const record = JSON.parse(json) as CachedRecord;
      return String(record.version) === version ? record : undefined;
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
  async fill(hash: string, record: CachedRecord): Promise<void> {
    try {
      const json = JSON.stringify(record);
      await this.call((redis) => redis.l2Fill(this.keys.authRecord(hash), record.version, `${this.mac(hash, record.version, json)}|${json}`, this.ttlSeconds));
    } catch (err) {
      this.failed("fill", err);
    }
  }

  /**
   * Tombstones every hash of one change at `version`, in one round trip. Resolves false when the tombstones
   * may not have been written (the caller then stops trusting L2 until they are: coherence/l2-guard.ts).
   */
  async invalidate(hashes: readonly string[], version: number): Promise<boolean> {
    if (hashes.length === 0 || !this.redis) return true;
    try {
      await this.call((redis) => redis.l2Invalidate(hashes.length, ...hashes.map((h) => this.keys.authRecord(h)), TOMBSTONE_TTL_SECONDS, ...hashes.map(() => version)));
      return true;
    } catch (err) {
      this.failed("invalidate", err);
      return false;
    }
  }

  /**
   * The tombstones of many events, each hash at its event's version (a repair replaying the event table): a few
   * round trips for a whole page instead of one per event. Throws when some may not have been written.
   */
  async repair(events: ReadonlyArray<{ tokens: readonly string[]; version: number }>): Promise<void> {
    if (!this.redis) return;
    const keys: string[] = [];
    const versions: number[] = [];
    for (const e of events)
      for (const t of e.tokens) {
        keys.push(this.keys.authRecord(t));
        versions.push(e.version);
      }
    for (let i = 0; i < keys.length; i += REPAIR_KEYS_PER_CALL) {
      const slice = keys.slice(i, i + REPAIR_KEYS_PER_CALL);
      await this.call((redis) => redis.l2Invalidate(slice.length, ...slice, TOMBSTONE_TTL_SECONDS, ...versions.slice(i, i + REPAIR_KEYS_PER_CALL)));
    }
  }
}
