import type { Logger } from "../logger.js";
import type { Database } from "../store/database.js";
import { readEventsAfter } from "../store/event-store.js";
import type { GatehouseRedis } from "../redis/client.js";
import type { RedisKeys } from "../redis/key-names.js";
import { reinstated } from "../testing/reinstated-bugs.js";

export interface L2GuardOptions {
  redis: GatehouseRedis | null;
  keys: RedisKeys;
  db: Database;
  logger: Logger;
  /** Writes the tombstones of many events, each token at its event's version; rejects when some may be missing. */
  tombstones: (events: ReadonlyArray<{ tokens: readonly string[]; version: number }>) => Promise<void>;
  /** The newest event id when this replica started (or its epoch began): it vouches for nothing before it. */
  startEventId: () => number;
  /** The database history this replica follows (null before it knows); L2 and its cursor are that history's. */
  lineage: () => string | null;
}

// Events replayed per table read during a repair.
const PAGE = 1_000;

/**
 * Decides whether this replica may read L2 (docs/coherence.md #9: the shared cache never rewinds).
 *
 * Tombstones make L2 safe only while Redis keeps them. Redis can lose or rewind them: restarted empty,
 * restored from an RDB/AOF snapshot taken before an invalidation, failed over to a replica that lagged, or
 * simply unreachable while an invalidation was applied. So L2 carries a cursor of its own, in the same Redis
 * as the tombstones (`RedisKeys.l2State`): `through` = every event up to this id has its tombstones here,
 * and `run_id` = the Redis server that was verified. Whatever rewinds the tombstones rewinds the cursor with
 * them, and a restart or failover changes the server's run_id.
 *
 * Every heartbeat (and at once after Redis reconnects) the guard reads the cursor, replays the tombstones of
 * every event after it from the event table (the truth), and moves it forward with a compare-and-set. L2 is
 * read only while the cursor was verified on the server now answering and covers every event this replica
 * cannot vouch for itself: those before it started, and any whose tombstone it failed to write. Until then
 * fills go to Postgres. Replaying from the table is complete because an L2 record never outlives the event
 * retention (its TTL is capped by it): an invalidation whose event was pruned can only concern records that
 * have expired.
 */
export class L2Guard {
  private trustedNow = false;
  private knownRunId: string | null = null;
  private highestFailedEventId = 0;
  private checking: Promise<void> | null = null;
  private checkAgain = false;
  readonly counters = { checks: 0, repairs: 0, eventsReplayed: 0, rewindsDetected: 0, checkFailures: 0 };

  constructor(private readonly o: L2GuardOptions) {
    const redis = o.redis;
    if (!redis) return;
    // A dropped connection may come back to another server, or the same one restarted: stop reading L2 now,
    // and check before reading it again.
    redis.on("close", () => {
      this.trustedNow = false;
    });
    redis.on("ready", () => this.check());
  }

  /** May L2 be read right now? */
  get trusted(): boolean {
    if (reinstated("l2-rewind")) return true;
    return this.trustedNow;
  }

  /**
   * A new database history (coherence's epoch): L2 moved to that history's namespace, whose cursor this replica
   * has not checked, and failures it remembered were of ids the new history issues again.
   */
  lineageChanged(): void {
    this.trustedNow = false;
    this.highestFailedEventId = 0;
    void this.check();
  }

  /** The tombstones of event `eventId` may not be in L2: stop reading it until the cursor covers the event. */
  tombstoneFailed(eventId: number): void {
    this.highestFailedEventId = Math.max(this.highestFailedEventId, eventId);
    this.trustedNow = false;
  }

  status() {
    return { trusted: this.trusted, redis: this.o.redis?.status ?? "not used", redis_run_id: this.knownRunId, ...this.counters };
  }

  /** Runs one check (coalescing concurrent requests); never throws. */
  check(): Promise<void> {
    if (!this.o.redis || reinstated("l2-rewind")) return Promise.resolve();
    if (this.checking) {
      this.checkAgain = true;
      return this.checking;
    }
    this.checking = (async () => {
      do {
        this.checkAgain = false;
        await this.checkOnce().catch((err: Error) => {
          this.counters.checkFailures++;
          this.trustedNow = false;
          this.o.logger.debug({ err: err.message }, "L2 state check failed; L2 is not read until it succeeds");
        });
      } while (this.checkAgain);
    })().finally(() => {
      this.checking = null;
    });
    return this.checking;
  }

  private async checkOnce(): Promise<void> {
    const redis = this.o.redis!;
    if (redis.status !== "ready") {
      this.trustedNow = false;
      return;
    }
    const lineage = this.o.lineage();
    if (lineage === null) {
      this.trustedNow = false;
      return;
    }
    this.counters.checks++;
    const stateKey = this.o.keys.l2State();
    // A check that spans an epoch change vouches for the old namespace only.
    const sameLineage = () => this.o.lineage() === lineage;
    for (let round = 0; round < 3; round++) {
      const [runId, stateRunId, throughText] = await redis.l2StateRead(stateKey);
      if (this.knownRunId !== null && runId !== this.knownRunId) {
        this.trustedNow = false;
        this.counters.rewindsDetected++;
        this.o.logger.warn(
          { previous_run_id: this.knownRunId, run_id: runId },
          "Redis restarted or failed over; L2 is not read until its tombstones are repaired from the event table",
        );
      }
      this.knownRunId = runId;
      // A cursor verified on another server (a restored snapshot, a promoted replica) still says what that
      // server held; its tombstones came along with it, so the replay starts from it all the same.
      const through = throughText === null ? 0 : Number(throughText);
      const required = Math.max(this.o.startEventId(), this.highestFailedEventId);
      const failedBefore = this.highestFailedEventId;
      const covered = await this.replayAfter(through, lineage);
      if (covered === through && stateRunId === runId) {
        this.trustedNow = through >= required && this.highestFailedEventId === failedBefore && sameLineage();
        return;
      }
      const moved = await redis.l2StateAdvance(stateKey, runId, stateRunId ?? "", throughText ?? "", String(covered));
      if (moved === 1) {
        if (stateRunId !== runId) {
          this.counters.repairs++;
          this.o.logger.info(
            { from_event_id: through, through_event_id: covered },
            stateRunId === null
              ? "L2 state cursor created; tombstones replayed from the event table"
              : "L2 tombstones repaired from the event table after Redis restarted or failed over",
          );
        }
        // Tombstones that failed while this ran leave the cursor's claim standing for others (another replica
        // or this replay wrote them), but this replica waits for the next round to be sure.
        this.trustedNow = covered >= required && this.highestFailedEventId === failedBefore && sameLineage();
        return;
      }
      // -1: the server changed under us; 0: another replica moved the cursor. Read it again.
    }
    this.trustedNow = false;
  }

  /** Writes the tombstones of every event after `after` from the table; returns the id it covered through. */
  private async replayAfter(after: number, lineage: string): Promise<number> {
    let cursor = after;
    for (;;) {
      const page = await this.o.db.query((q) => readEventsAfter(q, cursor, PAGE));
      // Another history's events must not move this history's cursor; coherence starts the new epoch.
      if (page.lineage !== lineage && !reinstated("lineage-blind")) throw new Error("the database answering is another history than the L2 namespace being repaired");
      // Events at or below the watermark are gone, and so is every record they invalidated (see above).
      cursor = Math.max(cursor, page.prunedThrough);
      const due = page.events.filter((e) => e.id > cursor);
      // All of a page in a few script calls: tombstones are idempotent and version-guarded, so their order does
      // not matter. (One call per event had three replicas send tens of thousands of calls after each restart
      // of a Redis holding a day of events, and log a failure for each when it went away again.)
      await this.o.tombstones(due).catch((err: Error) => {
        throw new Error(`tombstones of events ${due[0]!.id}–${due.at(-1)!.id} could not be written: ${err.message}`);
      });
      this.counters.eventsReplayed += due.length;
      if (due.length > 0) cursor = due.at(-1)!.id;
      if (page.events.length < PAGE) return cursor;
    }
  }
}
