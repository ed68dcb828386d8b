import type { Database } from "../store/database.js";
import { DependencyUnavailableError } from "../faults/breaker.js";
import { AuthenticationError, ServiceUnavailableError } from "../http/errors.js";
import { findKeyForAuth } from "../store/key-store.js";
import { authRecordFromRow, type AuthRecord } from "./auth-record.js";
import { hashKey } from "./key-material.js";
import type { L1Cache } from "./l1-cache.js";
import type { L2Cache } from "./l2-cache.js";

/** Where a record came from. "l1-static": from L1 although not fresh, because Postgres could not answer. */
export type CacheLevel = "l1" | "l2" | "db" | "l1-static";

export interface AuthResult {
  record: AuthRecord;
  /** Where the record came from, for metrics and tests. */
  level: CacheLevel;
}

/**
 * Answers "is this bearer a valid key, and for what?": sha256 → L1 → L2 → Postgres.
 * Concurrent misses for one hash share a single look-up. Validity is checked against the clock on every
 * call, whatever level served the record (COHERENCE.md #2).
 *
 * Fail static (COHERENCE.md #7): when Postgres cannot answer, a record this replica holds is served (its
 * validity still checked against the clock) even if L1 is not fresh; a key nobody holds gets 503, never 401.
 */
export class Authenticator {
  private readonly inflight = new Map<string, Promise<AuthResult | null>>();
  readonly counters = { l1: 0, l2: 0, db: 0, static: 0, unavailable: 0, misses: 0 };

  constructor(
    private readonly l1: L1Cache,
    private readonly l2: L2Cache,
    private readonly db: Database,
    /** False while this replica cannot vouch that L1 saw every recent change (COHERENCE.md #6). */
    private readonly l1Trusted: () => boolean = () => true,
    /** True while an L2 tombstone for the hash is being written (see CacheInvalidator). */
    private readonly l2Pending: (hash: string) => boolean = () => false,
  ) {}

  /** Resolves a bearer to a usable key record or throws AuthenticationError (401) / ServiceUnavailableError (503). */
  async authenticate(bearer: string): Promise<AuthResult> {
    const hash = hashKey(bearer);
    const cached = this.l1.get(hash);
    let result: AuthResult | null;
    if (cached && this.l1Trusted()) {
      result = cached.record ? { record: cached.record, level: "l1" } : null;
    } else {
      try {
        result = await this.resolve(hash);
      } catch (err) {
        if (!(err instanceof DependencyUnavailableError)) throw err;
        // A copy is served only if nothing says it is out of date: an L2 tombstone newer than it means
        // the key changed (perhaps revoked) while this replica was not listening.
        if (!cached?.record || (await this.l2.changedSince(hash, cached.record.version))) {
          this.counters.unavailable++;
          throw new ServiceUnavailableError("Cannot verify this key right now: the key store is unavailable. Retry shortly.", Number(err.headers["retry-after"] ?? 1), "key_store_unavailable");
        }
        result = { record: cached.record, level: "l1-static" };
      }
    }
    if (!result) {
      this.counters.misses++;
      throw new AuthenticationError("Invalid API key: no such key.");
    }
    this.counters[result.level === "l1-static" ? "static" : result.level]++;
    assertUsable(result.record, Date.now());
    return result;
  }

  /** L2, then Postgres, for a hash that missed L1 (or whose L1 entry is not trusted right now). */
  private resolve(hash: string): Promise<AuthResult | null> {
    let pending = this.inflight.get(hash);
    if (!pending) {
      pending = this.fill(hash).finally(() => this.inflight.delete(hash));
      this.inflight.set(hash, pending);
    }
    return pending;
  }

  private async fill(hash: string): Promise<AuthResult | null> {
    const ticket = this.l1.beginFill(hash);
    try {
      const fromL2 = this.l2Pending(hash) ? undefined : await this.l2.get(hash);
      if (fromL2) {
        this.l1.completeFill(ticket, fromL2);
        return { record: fromL2, level: "l2" };
      }
      const row = await this.db.query((q) => findKeyForAuth(q, hash));
      const record = row ? authRecordFromRow(row) : null;
      // Not awaited: the request does not need L2 to have it. The fill is version-guarded in Redis, so
      // landing late cannot overwrite a newer record or a tombstone (COHERENCE.md #5).
      if (record) void this.l2.fill(hash, record);
      this.l1.completeFill(ticket, record);
      return record ? { record, level: "db" } : null;
    } catch (err) {
      this.l1.abandonFill(ticket);
      throw err;
    }
  }
}

/** Blocked and expired keys are refused here, at request time, never by letting a cache entry lapse. */
export function assertUsable(record: AuthRecord, now: number): void {
  if (record.blocked) throw new AuthenticationError("This key is blocked.", "key_blocked");
  if (record.expiresAt !== null && record.expiresAt <= now) throw new AuthenticationError("This key has expired.", "key_expired");
  if (record.revokeAt !== null && record.revokeAt <= now) throw new AuthenticationError("This key was rotated and its grace period has ended.", "key_revoked");
}
