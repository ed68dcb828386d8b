import type { Database } from "../store/database.js";
import type { Logger } from "../logger.js";
import { commitKeyChange, type CommittedEventSink } from "../keys/key-change.js";
import { sweepExpiredDeprecatedKeys } from "../store/deprecated-key-store.js";
import { pruneEvents } from "../store/event-store.js";
import { pruneStoredResults } from "../store/idempotency-store.js";
import { nextKeyVersion } from "../store/key-store.js";

/**
 * Background upkeep, run by every replica: removes deprecated keys past revoke_at (with an "expiry"
 * event, so caches drop them too), Idempotency-Key results past their retention, and old events.
 * Every step is idempotent and safe to run concurrently on all replicas. Never throws: logs, reschedules.
 */
export interface SweeperOptions {
  db: Database;
  events: CommittedEventSink;
  logger: Logger;
  intervalMs: number;
  idempotencyRetentionMs: number;
  eventRetentionMs: number;
}

const SWEEP_BATCH = 1_000;

export class Sweeper {
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;

  constructor(private readonly o: SweeperOptions) {}

  start(): void {
    this.schedule();
  }

  async stop(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.running;
  }

  /** One pass; exposed for tests. */
  async sweepOnce(): Promise<{ deprecatedRemoved: number }> {
    let deprecatedRemoved = 0;
    for (;;) {
      const removed = await commitKeyChange(this.o.db, this.o.events, async (tx) => {
        const tokens = await sweepExpiredDeprecatedKeys(tx, SWEEP_BATCH);
        if (tokens.length === 0) return { result: 0, stale: null };
        return { result: tokens.length, stale: { kind: "expiry" as const, tokens, version: await nextKeyVersion(tx) } };
      });
      deprecatedRemoved += removed;
      if (removed < SWEEP_BATCH) break;
    }
    await this.o.db.query((q) => pruneStoredResults(q, this.o.idempotencyRetentionMs));
    await this.o.db.query((q) => pruneEvents(q, this.o.eventRetentionMs));
    return { deprecatedRemoved };
  }

  private schedule(): void {
    // Jitter spreads replicas' sweeps apart.
    const delay = this.o.intervalMs * (0.75 + Math.random() * 0.5);
    this.timer = setTimeout(() => {
      this.running = this.sweepOnce()
        .then(({ deprecatedRemoved }) => {
          if (deprecatedRemoved > 0) this.o.logger.info({ deprecated_removed: deprecatedRemoved }, "swept expired deprecated keys");
        })
        .catch((err) => this.o.logger.warn({ err: (err as Error).message }, "sweep failed; will retry"))
        .finally(() => {
          this.running = null;
          if (this.timer) this.schedule();
        });
    }, delay);
    this.timer.unref();
  }
}
