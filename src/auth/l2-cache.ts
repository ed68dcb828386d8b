import type { GatehouseRedis } from "../redis/client.js";
import type { RedisKeys } from "../redis/key-names.js";
import type { AuthRecord } from "./auth-record.js";

/**
 * L2: auth records in Redis, shared by every replica. Writes are version-guarded by Lua scripts
 * (l2-fill, l2-invalidate) so a slow fill can never overwrite a newer record or a tombstone.
 * Redis trouble is never an auth failure: every method degrades to "not cached".
 */

// A tombstone must outlive any fill still in flight; fills take milliseconds, a minute is ample.
const TOMBSTONE_TTL_SECONDS = 60;

export class L2Cache {
  constructor(
    private readonly redis: GatehouseRedis,
    private readonly keys: RedisKeys,
    private readonly ttlSeconds: number,
    private readonly onError: (op: string, err: unknown) => void,
  ) {}

  async get(hash: string): Promise<AuthRecord | undefined> {
    try {
      const value = await this.redis.get(this.keys.authRecord(hash));
      if (!value) return undefined;
      const json = value.slice(value.indexOf("|") + 1);
      return json ? (JSON.parse(json) as AuthRecord) : undefined;
    } catch (err) {
      this.onError("get", err);
      return undefined;
    }
  }

  async fill(record: AuthRecord): Promise<void> {
    try {
      await this.redis.l2Fill(this.keys.authRecord(record.token), record.version, JSON.stringify(record), this.ttlSeconds);
    } catch (err) {
      this.onError("fill", err);
    }
  }

  async invalidate(hash: string, version: number): Promise<void> {
    try {
      await this.redis.l2Invalidate(this.keys.authRecord(hash), version, TOMBSTONE_TTL_SECONDS);
    } catch (err) {
      this.onError("invalidate", err);
    }
  }
}
