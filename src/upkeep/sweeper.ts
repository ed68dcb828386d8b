import type { Database } from "../store/database.js";
import type { Logger } from "../logger.js";
import { commitChangeWithEvent, type CommittedEventSink } from "../coherence/change-commit.js";
import { sweepExpiredDeprecatedKeys } from "../store/deprecated-key-store.js";
import { pruneEvents } from "../store/event-store.js";
import { pruneSilentReplicas } from "../store/replica-store.js";
import { pruneStoredResults } from "../store/idempotency-store.js";
import { findDueBudgets, pruneSpendBatches, resetBudgetPeriod } from "../store/spend-store.js";
import { type BudgetPeriod, parseBudgetDuration } from "../config/duration.js";
import { nextKeyVersion } from "../store/key-store.js";
import { ledgerOf } from "../limits/admission.js";
import { Periodic } from "../timers/periodic.js";

export interface SweeperOptions {
  db: Database;
  events: CommittedEventSink;
  logger: Logger;
  intervalMs: number;
  idempotencyRetentionMs: number;
  eventRetentionMs: number;
  /** Told when a level's budget period was reset here (its ledger name, limits/admission.ts), so its live ledger is rebuilt. */
  onBudgetReset: (ledger: string, generation: string) => Promise<void>;
}

const SWEEP_BATCH = 1_000;

/**
 * The sweep, run by every replica: removes deprecated keys past revoke_at (with an "expiry" event, so
 * caches drop them too), resets budgets whose `budget_reset_at` has passed, and prunes Idempotency-Key
 * results, spend batch ids and events past their retention. Every step is idempotent and safe to run
 * concurrently on all replicas.
 */
export class Sweeper {
  private readonly loop: Periodic;

  constructor(private readonly o: SweeperOptions) {
    // Jitter spreads replicas' sweeps apart.
    this.loop = new Periodic({ logger: o.logger, intervalMs: o.intervalMs, jitter: 0.5, pass: () => this.sweepAndReport(), failureMessage: "sweep failed; will retry" });
  }

  start(): void {
    this.loop.start();
  }

  stop(): Promise<void> {
    return this.loop.stop();
  }

  /** One pass; exposed for tests. */
  async sweepOnce(): Promise<{ deprecatedRemoved: number; budgetsReset: number }> {
    let deprecatedRemoved = 0;
    for (;;) {
      const removed = await commitChangeWithEvent(this.o.db, this.o.events, async (tx) => {
        const tokens = await sweepExpiredDeprecatedKeys(tx, SWEEP_BATCH);
        if (tokens.length === 0) return { result: 0, stale: null };
        return { result: tokens.length, stale: { kind: "expiry" as const, tokens, version: await nextKeyVersion(tx) } };
      });
      deprecatedRemoved += removed;
      if (removed < SWEEP_BATCH) break;
    }
    const budgetsReset = await this.resetDueBudgets();
    await this.o.db.query((q) => pruneStoredResults(q, this.o.idempotencyRetentionMs));
    await this.o.db.query((q) => pruneSpendBatches(q, this.o.idempotencyRetentionMs));
    await this.o.db.query((q) => pruneEvents(q, this.o.eventRetentionMs));
    await this.o.db.query(pruneSilentReplicas);
    return { deprecatedRemoved, budgetsReset };
  }

  /**
   * A budget (a key's, a team's or a user's) resets within one sweep interval of its `budget_reset_at`
   * (docs/limits.md). One bad row (a `budget_duration` written by hand or by an older version, or any
   * failure resetting it) is logged by its id and skipped: it must never stop the other due budgets from resetting.
   */
  private async resetDueBudgets(): Promise<number> {
    let reset = 0;
    for (const due of await this.o.db.query((q) => findDueBudgets(q, SWEEP_BATCH))) {
      const who = { [`${due.level}_id`]: due.id };
      let period: BudgetPeriod;
      try {
        period = parseBudgetDuration(due.budgetDuration);
      } catch (err) {
        // Validated on write; a row edited by hand must not stop the sweep.
        this.o.logger.warn({ ...who, budget_duration: due.budgetDuration, err: (err as Error).message }, "skipped a budget reset: its budget_duration is invalid");
        continue;
      }
      try {
        const generation = await this.o.db.query((q) => resetBudgetPeriod(q, due.level, due.id, period, due.model));
        if (generation === null) continue; // another replica reset it first
        reset++;
        await this.o.onBudgetReset(ledgerOf(due.level, due.id, undefined, due.model), generation);
      } catch (err) {
        this.o.logger.warn({ ...who, err: (err as Error).message }, "a budget reset failed; skipped it and went on with the others");
      }
    }
    return reset;
  }

  private async sweepAndReport(): Promise<void> {
    const { deprecatedRemoved, budgetsReset } = await this.sweepOnce();
    if (deprecatedRemoved > 0) this.o.logger.info({ deprecated_removed: deprecatedRemoved }, "swept expired deprecated keys");
    if (budgetsReset > 0) this.o.logger.info({ budgets_reset: budgetsReset }, "reset budgets whose period ended");
  }
}
