import type { Database } from "../store/database.js";
import { AuthenticationError, ServiceUnavailableError, DependencyUnavailableError } from "../errors/errors.js";
import { findKeyForAuth } from "../store/key-store.js";
import { findTeamForAuth } from "../store/team-store.js";
import { findUserForAuth } from "../store/user-store.js";
import type { Queryable } from "../store/db.js";
import {
  authRecordFromRow,
  teamCacheKey,
  teamRecordFromRow,
  userCacheKey,
  userRecordFromRow,
  type AuthRecord,
  type CachedRecord,
  type TeamRecord,
  type UserRecord,
} from "./auth-record.js";
import { hashKey } from "./key-material.js";
import type { FillTicket, L1Cache } from "./l1-cache.js";
import type { TokenFilter } from "./token-filter.js";
import type { UnknownTokenCheck } from "./unknown-token-check.js";
import { reinstated } from "../testing/reinstated-bugs.js";
import type { L2Cache } from "./l2-cache.js";

/** Where a record came from. "l1-static": from L1 although not fresh, because Postgres could not answer. */
export type CacheLevel = "l1" | "l2" | "db" | "l1-static";

export interface AuthResult {
  record: AuthRecord;
  /** Where the record came from, for metrics and tests. */
  level: CacheLevel;
  /** The key's team, when it has one (already checked: not blocked, not deleted). */
  team: TeamRecord | null;
  /** The key's user, when it names one that exists (already checked: not deleted). */
  user?: UserRecord | null;
}

/**
 * Answers "is this bearer a valid key, and for what?": sha256 → L1 → L2 → Postgres.
 * Concurrent misses for one hash share a single look-up. Validity is checked against the clock on every
 * call, whatever level served the record (docs/coherence.md #2).
 *
 * Fail static (docs/coherence.md #7): when Postgres cannot answer, a record this replica holds is served (its
 * validity still checked against the clock) even if L1 is not fresh; a key nobody holds gets 503, never 401.
 */
export interface AuthenticatorOptions {
  /** False while this replica cannot vouch that L1 saw every recent change (docs/coherence.md #6). */
  l1Trusted?: () => boolean;
  /** True while an L2 tombstone for the hash is being written (see CacheInvalidator). */
  l2Pending?: (hash: string) => boolean;
  /** The clock validity is checked against: the database's (coherence/db-clock.ts). */
  now?: () => number;
  /** Every token that may authenticate (auth/token-filter.ts), or null while it is being built. */
  tokenFilter?: () => TokenFilter | null;
  /** Holds a token the filter refuses until this replica has caught up (auth/unknown-token-check.ts); absent: refused at once. */
  unknownTokens?: UnknownTokenCheck;
}

// A read an invalidation overtook is read again, a few times at most: a key changing faster than its record
// can be read gets a 503 (retry) rather than an answer that is already stale.
const MAX_FILL_ATTEMPTS = 4;

/** One shared look-up of a hash; `ticket` is the fill attempt in progress (it changes when one is read again). */
interface SharedFill {
  promise: Promise<Found | null>;
  ticket: FillTicket;
}

export class Authenticator {
  private readonly inflight = new Map<string, SharedFill>();
  readonly counters = { l1: 0, l2: 0, db: 0, static: 0, unavailable: 0, misses: 0, refills: 0, filtered: 0 };
  private readonly l1Trusted: () => boolean;
  private readonly l2Pending: (hash: string) => boolean;
  private readonly now: () => number;
  private readonly tokenFilter: () => TokenFilter | null;
  private readonly unknownTokens: UnknownTokenCheck | undefined;

  constructor(
    private readonly l1: L1Cache,
    private readonly l2: L2Cache,
    private readonly db: Database,
    options: AuthenticatorOptions = {},
  ) {
    this.l1Trusted = options.l1Trusted ?? (() => true);
    this.l2Pending = options.l2Pending ?? (() => false);
    this.now = options.now ?? Date.now;
    this.tokenFilter = options.tokenFilter ?? (() => null);
    this.unknownTokens = options.unknownTokens;
  }

  /**
   * authenticate() when this replica's L1 alone answers it now — the key's entry, and its team's and user's, held
   * and trusted — without a promise: the request path's usual case. Undefined when it cannot (authenticate() then
   * reads on). The same rules, counters and refusals (thrown) as authenticate()'s L1 answer.
   */
  held(hash: string): AuthResult | undefined {
    if (!this.l1Trusted()) return undefined;
    const cached = this.l1.get(hash) as KeyEntry | undefined;
    if (cached === undefined) return undefined;
    const record = cached.record;
    if (!record) {
      this.counters.misses++;
      throw new AuthenticationError("Invalid API key: no such key.");
    }
    const { teamId, userId } = record;
    const team = teamId === null ? null : (this.l1.get(teamCacheKey(teamId)) as { record: TeamRecord | null } | undefined);
    const user = userId === null ? null : (this.l1.get(userCacheKey(userId)) as { record: UserRecord | null } | undefined);
    if (team === undefined || user === undefined) return undefined;
    this.counters.l1++;
    assertUsable(record, this.now());
    const result: AuthResult = { record, level: "l1", team: null };
    if (team !== null) {
      result.team = team.record;
      assertTeamUsable(result.team, teamId!);
    }
    if (user !== null) {
      result.user = user.record;
      assertUserUsable(result.user, userId!);
    }
    return result;
  }

  /** Resolves a bearer to a usable key record or throws AuthenticationError (401) / ServiceUnavailableError (503). */
  async authenticate(bearer: string, hash = hashKey(bearer)): Promise<AuthResult> {
    const cached = this.l1.get(hash) as KeyEntry | undefined;
    let result: AuthResult | null;
    const trusted = this.l1Trusted();
    if (cached && trusted) {
      result = cached.record ? { record: cached.record, level: "l1", team: null } : null;
    } else if (!cached && trusted && this.tokenFilter()?.mayContain(hash) === false && !(await this.unknownTokens?.exists(hash))) {
      // A token no key had as of every event this replica applied, and none had it once this replica caught up on
      // every event committed before the token arrived (auth/unknown-token-check.ts: no statement of its own). A key
      // generated on another replica a moment ago is noted by its event meanwhile and goes on to the look-up below.
      this.counters.filtered++;
      throw new AuthenticationError("Invalid API key: no such key.");
    } else {
      const found = await this.readThrough(hash, cached, readKey);
      result = found && { record: found.record, level: found.level, team: null };
    }
    if (!result) {
      this.counters.misses++;
      throw new AuthenticationError("Invalid API key: no such key.");
    }
    this.counters[result.level === "l1-static" ? "static" : result.level]++;
    assertUsable(result.record, this.now());
    const { teamId, userId } = result.record;
    if (teamId !== null) {
      result.team = await this.owner(teamCacheKey(teamId), readTeam);
      assertTeamUsable(result.team, teamId);
    }
    if (userId !== null) {
      result.user = await this.owner(userCacheKey(userId), readUser);
      assertUserUsable(result.user, userId);
    }
    return result;
  }

  /**
   * What authenticate() would decide for a token of this record now, without a bearer: the refusal it would throw
   * (null: it would pass), and the team and user records it would check, read the same way (caches, then Postgres).
   * For the admin API's view of a key (keys/key-standing.ts): the UI says "valid" only where a request would be.
   */
  async standing(record: AuthRecord): Promise<{ refusal: AuthenticationError | null; team: TeamRecord | null; user: UserRecord | null }> {
    const refusal = keyRefusal(record, this.now());
    if (refusal) return { refusal, team: null, user: null };
    const { teamId, userId } = record;
    const team = teamId === null ? null : await this.owner(teamCacheKey(teamId), readTeam);
    const teamRefused = teamId === null ? null : teamRefusal(team, teamId);
    if (teamRefused) return { refusal: teamRefused, team, user: null };
    const user = userId === null ? null : await this.owner(userCacheKey(userId), readUser);
    return { refusal: userId === null ? null : userRefusal(user, userId), team, user };
  }

  /**
   * A team's or a user's record, through the same caches and with the same rules as a key's (an invalidation
   * overtaking a read, fail static); null when there is none.
   */
  private async owner<R extends TeamRecord | UserRecord>(cacheKey: string, read: RecordReader<R>): Promise<R | null> {
    const cached = this.l1.get(cacheKey) as { record: R | null } | undefined;
    if (cached && this.l1Trusted()) return cached.record;
    return (await this.readThrough(cacheKey, cached, read))?.record ?? null;
  }

  /**
   * L2 then Postgres for a record that missed L1 (or whose L1 entry is not trusted right now). When Postgres
   * cannot answer, a copy this replica holds is served only if nothing says it is out of date: an L2 tombstone
   * newer than it means the record changed (perhaps revoked) while this replica was not listening (fail static,
   * docs/coherence.md #7).
   */
  private async readThrough<R extends CachedRecord>(
    cacheKey: string,
    cached: { record: R | null } | undefined,
    read: RecordReader<R>,
  ): Promise<{ record: R; level: CacheLevel } | null> {
    try {
      return (await this.resolve(cacheKey, read)) as { record: R; level: CacheLevel } | null;
    } catch (err) {
      if (!(err instanceof DependencyUnavailableError)) throw err;
      // A team's or a user's absence is served like a record: an implicit user's keys keep working (fail static).
      const held = cached !== undefined && (cached.record !== null || read !== (readKey as RecordReader<CachedRecord>));
      if (!held || (await this.l2.changedSince(cacheKey, cached.record?.version ?? 0))) {
        this.counters.unavailable++;
        throw new ServiceUnavailableError("Cannot verify this key right now: the key store is unavailable. Retry shortly.", {
          code: "key_store_unavailable",
          retryAfterSeconds: Number(err.headers["retry-after"] ?? 1),
        });
      }
      return cached.record === null ? null : { record: cached.record, level: "l1-static" };
    }
  }

  /**
   * One shared look-up per cache key. Concurrent misses share it — but never one that an invalidation of the
   * key has overtaken: a request that arrives after the invalidation was applied starts a read of its own
   * (docs/coherence.md #5).
   */
  private resolve(cacheKey: string, read: RecordReader<CachedRecord>): Promise<Found | null> {
    const shared = this.inflight.get(cacheKey);
    if (shared && (!shared.ticket.cancelled || reinstated("joined-fill"))) return shared.promise;
    const fill: SharedFill = { promise: null!, ticket: null! };
    fill.promise = this.fill(cacheKey, fill, read).finally(() => {
      if (this.inflight.get(cacheKey) === fill) this.inflight.delete(cacheKey);
    });
    this.inflight.set(cacheKey, fill);
    return fill.promise;
  }

  /**
   * Reads the record and lands it in L1. If an invalidation of the key is applied while the read runs, what
   * was read may predate it: it is neither cached nor answered; the read starts again, so every request that
   * shares this look-up gets a record read after the last invalidation applied before its answer.
   */
  private async fill(cacheKey: string, shared: SharedFill, read: RecordReader<CachedRecord>): Promise<Found | null> {
    for (let attempt = 1; ; attempt++) {
      const ticket = this.l1.beginFill(cacheKey);
      shared.ticket = ticket;
      let result: Found | null;
      try {
        result = await this.readOnce(cacheKey, read);
      } catch (err) {
        this.l1.abandonFill(ticket);
        throw err;
      }
      const miss = read === (readKey as RecordReader<CachedRecord>) ? "brief" : "like-a-record";
      if (this.l1.completeFill(ticket, result?.record ?? null, miss) || reinstated("joined-fill")) return result;
      this.counters.refills++;
      if (attempt >= MAX_FILL_ATTEMPTS) throw new ServiceUnavailableError("This key is being changed right now. Retry shortly.", { code: "key_changing" });
    }
  }

  private async readOnce(cacheKey: string, read: RecordReader<CachedRecord>): Promise<Found | null> {
    const fromL2 = this.l2Pending(cacheKey) ? undefined : await this.l2.get(cacheKey);
    if (fromL2) return { record: fromL2, level: "l2" };
    const record = await this.db.query((q) => read(q, cacheKey));
    // Not awaited: the request does not need L2 to have it. The fill is version-guarded in Redis, so
    // landing late cannot overwrite a newer record or a tombstone (docs/coherence.md #5).
    if (record) void this.l2.fill(cacheKey, record);
    return record ? { record, level: "db" } : null;
  }
}

type Found = { record: CachedRecord; level: CacheLevel };
type KeyEntry = { record: AuthRecord | null };
/** Reads one record from Postgres by its cache key. */
type RecordReader<R extends CachedRecord> = (q: Queryable, cacheKey: string) => Promise<R | null>;

const readKey: RecordReader<AuthRecord> = async (q, hash) => {
  const row = await findKeyForAuth(q, hash);
  return row ? authRecordFromRow(row) : null;
};

const readTeam: RecordReader<TeamRecord> = async (q, cacheKey) => {
  const row = await findTeamForAuth(q, cacheKey.slice("team:".length));
  return row ? teamRecordFromRow(row) : null;
};

const readUser: RecordReader<UserRecord> = async (q, cacheKey) => {
  const row = await findUserForAuth(q, cacheKey.slice("user:".length));
  return row ? userRecordFromRow(row) : null;
};

/**
 * Why a key of a deleted user is refused, naming the user, or null; a user_id with no row is an implicit user (no
 * rules). The refusal functions below are the rules themselves: authenticate() throws what they return, and the
 * admin API's view of a key (keys/key-standing.ts) reports it, so the two cannot disagree.
 */
export function userRefusal(user: UserRecord | null, userId: string): AuthenticationError | null {
  return user?.deleted ? new AuthenticationError(`This key's user '${userId}' was deleted.`, { code: "user_deleted" }) : null;
}

/**
 * A key in a team is refused when its team is blocked or deleted (or missing), naming the team: one event on the
 * team refuses every key in it, on every replica, with no per-key work.
 */
export function teamRefusal(team: TeamRecord | null, teamId: string): AuthenticationError | null {
  const name = team?.teamAlias ? `'${team.teamAlias}' (${teamId})` : `'${teamId}'`;
  if (team === null || team.deleted) return new AuthenticationError(`This key's team ${name} was deleted.`, { code: "team_deleted" });
  if (team.blocked) return new AuthenticationError(`This key's team ${name} is blocked.`, { code: "team_blocked" });
  return null;
}

/** Blocked and expired keys are refused here, at request time, never by letting a cache entry lapse. */
export function keyRefusal(record: Pick<AuthRecord, "blocked" | "expiresAt" | "revokeAt">, now: number): AuthenticationError | null {
  if (record.blocked) return new AuthenticationError("This key is blocked.", { code: "key_blocked" });
  if (record.expiresAt !== null && record.expiresAt <= now) return new AuthenticationError("This key has expired.", { code: "key_expired" });
  if (record.revokeAt !== null && record.revokeAt <= now) return new AuthenticationError("This key was rotated and its grace period has ended.", { code: "key_revoked" });
  return null;
}

export function assertUserUsable(user: UserRecord | null, userId: string): void {
  const refused = userRefusal(user, userId);
  if (refused) throw refused;
}

export function assertTeamUsable(team: TeamRecord | null, teamId: string): asserts team is TeamRecord {
  const refused = teamRefusal(team, teamId);
  if (refused) throw refused;
}

export function assertUsable(record: AuthRecord, now: number): void {
  const refused = keyRefusal(record, now);
  if (refused) throw refused;
}
