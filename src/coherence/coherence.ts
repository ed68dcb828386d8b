import type { Database } from "../store/database.js";
import type { Logger } from "../logger.js";
import type { CacheInvalidator } from "./cache-invalidator.js";
import { EVENTS_CHANNEL, parseEventPayload, readEventsAfter, type EventPage, type KeyEvent } from "../store/event-store.js";
import { type DbClock, monotonicMs } from "./db-clock.js";
import { EventListener, type ListenerState } from "./event-listener.js";
import { Periodic } from "../timers/periodic.js";
import { reinstated } from "../testing/reinstated-bugs.js";
import { type AppliedLag, LagHistory } from "./lag-history.js";

// Ids applied ahead of a gap that the catch-up has not reached yet; past this many, forget them (the
// catch-up then applies them again, which is only an extra eviction).
const MAX_APPLIED_EARLY = 10_000;

export interface CoherenceOptions {
  db: Database;
  /** Null for a single embedded replica: every change is its own, applied at commit; no LISTEN needed. */
  listenUrl: string | null;
  invalidator: CacheInvalidator;
  logger: Logger;
  replicaId: string;
  heartbeatIntervalMs: number;
  staleAfterMs: number;
  /** Events read per catch-up query. */
  pageSize?: number;
  /** Told the commit → applied lag of every event, once (metrics). */
  onLag?: (lagMs: number) => void;
  /** The database clock this replica keeps (sampled by every catch-up). */
  clock: DbClock;
  /** Told when the L2 tombstones of an event may not have been written (coherence/l2-guard.ts). */
  onTombstoneFailed?: (eventId: number) => void;
  /** Run on every heartbeat besides the catch-up (the L2 guard's check); must not throw. */
  onHeartbeat?: () => void;
  /** The L2 guard's state, shown beside this replica's coherence state (/debug/coherence). */
  l2Status?: () => object;
  /** More of this replica's auth state, shown beside it (the check of unknown tokens). */
  moreStatus?: () => object;
  /** Told (monotonic ms) when a catch-up that began then has applied every event committed before it began. */
  onCaughtUp?: (startedAt: number) => void;
  /**
   * Told synchronously when this replica adopts a database lineage: at start (`previous` null), and whenever the
   * database now answering is another history (a promoted standby, a restore). What keeps state of one lineage
   * (the Redis key namespace of L2 and the ledgers, the L2 guard, the token filter, admissions held ahead) must
   * start over from the new one before anything is served from it.
   */
  onLineage?: (lineage: string, previous: string | null) => void;
}

// Recent per-event propagation lags kept for /debug/coherence and the benchmarks.
const LAG_HISTORY = 20_000;

/**
 * Keeps this replica's caches coherent with every committed key change (docs/coherence.md #2, #5, #6).
 *
 * - Fast path: a NOTIFY per event, on a dedicated LISTEN connection, applied in milliseconds.
 * - Floor: every `heartbeatIntervalMs` the event table is read after the last applied id, so a lost
 *   notification is applied within one interval; on every listener reconnect the same catch-up runs.
 * - If the events needed were pruned, the whole L1 is dropped.
 * - "Fresh" means a catch-up completed within `staleAfterMs`; when it is not, the authenticator does not
 *   serve from L1 (it cannot know what it missed).
 */
export class Coherence {
  /** The database history the applied ids belong to (store/event-store.ts LINEAGE); null before start. */
  private lineage: string | null = null;
  private lastAppliedId = 0;
  private startEventId = 0;
  /** Monotonic time (ms) at which the last complete catch-up started. */
  private syncedAt = 0;
  private listener: EventListener | null = null;
  private heartbeat: Periodic | null = null;
  private catchUpRunning: Promise<void> | null = null;
  private catchUpAgain = false;
  private stopped = false;
  private readonly lags = new LagHistory(LAG_HISTORY);
  readonly counters = { notifications: 0, replayed: 0, l1Drops: 0, catchUpFailures: 0, epochs: 0 };
  /** Ids applied from their notification ahead of a gap; the catch-up only steps over them. */
  private readonly appliedEarly = new Set<number>();

  constructor(private readonly o: CoherenceOptions) {}

  async start(): Promise<void> {
    // A replica starts with an empty L1: nothing before the newest event can be stale in it.
    const startedAt = monotonicMs();
    // Nothing after the newest id: only where ids stand now, and which history they belong to.
    const page = await this.o.db.query((q) => readEventsAfter(q, Number.MAX_SAFE_INTEGER, 1));
    this.o.clock.observe(page.dbNow, monotonicMs());
    this.lineage = page.lineage;
    this.lastAppliedId = page.latestId;
    this.startEventId = page.latestId;
    this.o.onLineage?.(page.lineage, null);
    this.syncedAt = startedAt;
    await this.catchUp(); // also the first reading of the database clock
    if (this.o.listenUrl === null) {
      this.startHeartbeat();
      return;
    }
    this.listener = new EventListener({
      connectionString: this.o.listenUrl,
      channel: EVENTS_CHANNEL,
      applicationName: `gatehouse-listen:${this.o.replicaId}`,
      checkIntervalMs: this.o.heartbeatIntervalMs,
      logger: this.o.logger,
      onNotification: (payload) => void this.onNotification(payload),
      onConnected: () => this.requestCatchUp(),
    });
    await this.listener.start();
    this.startHeartbeat();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.heartbeat?.stop();
    await this.listener?.close();
    await this.catchUpRunning?.catch(() => {});
  }

  /** True when this replica knows it has applied every event committed up to `staleAfterMs` ago (monotonic clock). */
  isFresh(now = monotonicMs()): boolean {
    return now - this.syncedAt <= this.o.staleAfterMs;
  }

  /**
   * The newest event id when this replica started, or when its current epoch began: it applied every event
   * after it, and none before.
   */
  get firstEventId(): number {
    return this.startEventId;
  }

  /** The database history this replica serves (null before start). */
  get currentLineage(): string | null {
    return this.lineage;
  }

  /** The writer's own change, right after COMMIT: read-your-writes on this replica without a round trip. */
  async applyCommitted(event: KeyEvent): Promise<void> {
    if (event.id === this.lastAppliedId + 1) {
      this.lastAppliedId = event.id;
      await this.apply(event);
    } else if (event.id > this.lastAppliedId) {
      await this.applyEarly(event);
    } else {
      // Within one history a new commit's id is above every id committed before it, so this database has
      // issued an id again: it is another history (a standby promoted after losing commits). Evict now, and
      // let the catch-up start the new epoch at once rather than at the next heartbeat.
      await this.apply(event);
      this.requestCatchUp();
    }
  }

  /**
   * Applies an event ahead of the ones before it (a gap not yet filled, or this replica's own change). It
   * is remembered, so neither its notification nor the catch-up evicts its keys a second time: by then
   * this replica may have cached them afresh (read after the commit), and a pointless second eviction
   * would leave it with nothing to serve if Postgres went away next (docs/coherence.md #7).
   */
  private applyEarly(event: KeyEvent): Promise<void> {
    if (this.appliedEarly.size >= MAX_APPLIED_EARLY) this.appliedEarly.clear();
    this.appliedEarly.add(event.id);
    return this.apply(event);
  }

  get listenerState(): ListenerState | "not used" {
    if (this.o.listenUrl === null) return "not used";
    return this.listener?.state ?? "connecting";
  }

  status() {
    return {
      replica_id: this.o.replicaId,
      lineage: this.lineage,
      last_applied_event_id: this.lastAppliedId,
      listener: this.listenerState,
      fresh: this.isFresh(),
      synced_ms_ago: Math.round(monotonicMs() - this.syncedAt),
      db_clock_offset_ms: Math.round(this.o.clock.offsetMs()),
      l2: this.o.l2Status?.() ?? null,
      recent_lags_ms: this.recentLags(),
      ...this.counters,
      ...this.o.moreStatus?.(),
    };
  }

  /** Commit → applied lags of the last 1,000 events applied here: count, p50, p99, max (ms). */
  private recentLags() {
    const lags = this.lags.lastLags(1_000).sort((a, b) => a - b);
    const at = (p: number) => (lags.length === 0 ? null : Math.round(lags[Math.min(lags.length - 1, Math.floor((p / 100) * lags.length))]! * 10) / 10);
    return { count: lags.length, p50: at(50), p99: at(99), max: lags.length === 0 ? null : Math.round(lags.at(-1)! * 10) / 10 };
  }

  /** Lags (commit → applied here) of events applied since `afterId`. */
  appliedSince(afterId: number): AppliedLag[] {
    return this.lags.since(afterId);
  }

  private async onNotification(payload: unknown): Promise<void> {
    this.counters.notifications++;
    const event = parseEventPayload(payload, () => this.o.clock.now());
    if (!event || event.id <= this.lastAppliedId) return;
    try {
      // The next id is applied at once, even while a catch-up runs (it skips ids already claimed): under
      // steady traffic the heartbeat's catch-up must not turn every notification into a replay.
      if (event.id === this.lastAppliedId + 1 && (event.tokens || this.appliedEarly.has(event.id))) {
        this.lastAppliedId = event.id; // claimed before the await, so the order of ids is kept
        if (this.appliedEarly.delete(event.id)) return;
        await this.apply({ ...event, tokens: event.tokens! });
        return;
      }
      // Out of order (a gap) or too many tokens to carry: evict what we can now, and let the catch-up
      // fill in the rest in id order.
      if (event.tokens && !this.appliedEarly.has(event.id)) await this.applyEarly({ ...event, tokens: event.tokens });
      this.requestCatchUp();
    } catch (err) {
      this.o.logger.warn({ err: (err as Error).message }, "applying a key event failed; catching up from the table");
      this.requestCatchUp();
    }
  }

  /** Runs a catch-up soon: at once, or right after the one in flight (which may have begun before the caller's moment). */
  requestCatchUp(): void {
    if (this.stopped) return;
    if (this.catchUpRunning) {
      this.catchUpAgain = true;
      return;
    }
    this.catchUpRunning = this.catchUpLoop().finally(() => {
      this.catchUpRunning = null;
    });
  }

  private async catchUpLoop(): Promise<void> {
    do {
      this.catchUpAgain = false;
      await this.catchUp();
    } while (this.catchUpAgain && !this.stopped);
  }

  /** Replays every event after the last applied id; never throws (a background loop logs and retries). */
  private async catchUp(): Promise<void> {
    const startedAt = monotonicMs();
    const pageSize = this.o.pageSize ?? 1_000;
    try {
      for (;;) {
        const after = this.lastAppliedId;
        const page = await this.o.db.query((q) => readEventsAfter(q, after, pageSize));
        this.o.clock.observe(page.dbNow, monotonicMs());
        // Every id up to `after` was committed before this read began, so a database whose newest id is below
        // it has lost them: like another lineage, a history this replica's state does not belong to.
        if ((page.lineage !== this.lineage || page.latestId < after) && !reinstated("lineage-blind")) {
          this.beginEpoch(page, after);
          continue;
        }
        if (page.prunedThrough > this.lastAppliedId) {
          // The events we would need are gone: anything in L1 may be stale.
          this.o.invalidator.dropL1();
          this.counters.l1Drops++;
          this.o.logger.warn({ last_applied: this.lastAppliedId, pruned_through: page.prunedThrough }, "missed key events were pruned; dropped the whole L1");
          this.lastAppliedId = page.prunedThrough;
        }
        for (const event of page.events) {
          if (event.id <= this.lastAppliedId) continue;
          if (this.appliedEarly.delete(event.id)) {
            this.lastAppliedId = event.id;
            continue;
          }
          // Claimed at once (L1 is evicted synchronously inside apply), so a notification of the next id
          // arriving meanwhile is applied in order instead of starting another round. The L2 tombstone is not
          // waited for: until it lands, fills of those hashes skip L2 (CacheInvalidator.l2Pending) and a failure
          // reaches the L2 guard, so freshness — what L1 may serve — does not hang on a slow or restarting Redis
          // (a replay of many events after a Redis restart had kept a replica stale past the bound).
          this.lastAppliedId = event.id;
          this.apply(event).catch((err: Error) => this.o.logger.warn({ err: err.message, event_id: event.id }, "applying a replayed key event failed"));
          this.counters.replayed++;
        }
        if (page.events.length < pageSize) break;
      }
      this.syncedAt = startedAt;
      this.o.onCaughtUp?.(startedAt);
    } catch (err) {
      this.counters.catchUpFailures++;
      this.o.logger.warn({ err: (err as Error).message }, "key event catch-up failed; will retry");
    }
  }

  /**
   * The database answering is another history than the one this replica applied (docs/coherence.md, "Engine
   * failover"): ids, versions and cache records of the old one mean nothing in it. Everything derived from the
   * old history is dropped before the next answer: L1 (fills in flight cancelled), and through onLineage the
   * Redis namespace of L2 and the ledgers, the L2 guard's cursor and the token filter. The event cursor moves to
   * the new database's newest id: nothing older can be stale in an empty L1. Synchronous, so no request is
   * answered between the steps.
   */
  private beginEpoch(page: EventPage, appliedThrough: number): void {
    const previous = this.lineage;
    this.counters.epochs++;
    this.o.logger.warn(
      { previous_lineage: previous, lineage: page.lineage, applied_through: appliedThrough, newest_event_id: page.latestId },
      page.lineage !== previous
        ? "the database answering is another history (a promoted standby or a restore); caches of the old one dropped, following the new one"
        : "the database has lost events this replica applied (restored to an earlier point); caches dropped, following what it holds now",
    );
    this.lineage = page.lineage;
    this.lastAppliedId = page.latestId;
    this.startEventId = page.latestId;
    this.appliedEarly.clear();
    this.lags.clear(); // ids are issued again in the new history; their lags are new measurements
    this.o.onLineage?.(page.lineage, previous);
    this.o.invalidator.dropL1();
    this.counters.l1Drops++;
  }

  /** Evicts (synchronously, inside invalidate) and records the lag at that moment; then waits for L2. */
  private async apply(event: KeyEvent): Promise<void> {
    const started = performance.now();
    const done = this.o.invalidator.invalidate(event.tokens, event.version);
    this.recordLag(event, (performance.now() - started) * 1000);
    if (!(await done)) this.o.onTombstoneFailed?.(event.id);
  }

  private startHeartbeat(): void {
    if (this.stopped) return;
    // A throw from a heartbeat task ends only that beat (Periodic logs it and sets the next one): the catch-ups
    // that keep this replica fresh must go on (without them it would stop vouching for L1, for good). A beat is
    // synchronous (the catch-up it asks for runs on its own), so beats come every interval.
    this.heartbeat = new Periodic({
      logger: this.o.logger,
      intervalMs: this.o.heartbeatIntervalMs,
      pass: () => {
        this.requestCatchUp();
        this.o.onHeartbeat?.();
      },
      failureMessage: "a heartbeat task failed",
    });
    this.heartbeat.start();
  }

  private recordLag(event: Pick<KeyEvent, "id" | "at">, applyUs = 0): void {
    // Commit time is the database's clock; so is "now" (coherence/db-clock.ts).
    const now = this.o.clock.now();
    if (this.lags.record(event.id, now - event.at, now, applyUs)) this.o.onLag?.(now - event.at);
  }
}
