import { randomUUID } from "node:crypto";
import type { Logger } from "../logger.js";
import { ledgerOf, type SpendOwner } from "./admission.js";
import type { Database } from "../store/database.js";
import { flushSpendBatch, type SoftBudgetCrossing, type SpendBatch, type SpendItem } from "../store/spend-store.js";

export interface SpendLedgerOptions {
  db: Database;
  logger: Logger;
  replicaId: string;
  /** Told about levels (by ledger name) whose live ledger is of a generation Postgres has reset since. */
  onResetSeen: (levels: Array<{ ledger: string; generation: string }>) => void;
  /** Told about keys a flush took across their soft budget (once per crossing, cluster-wide). */
  onSoftBudgetCrossed?: (crossings: SoftBudgetCrossing[]) => void;
}

/**
 * The durable side of spend: every charge this replica makes is queued here and written to Postgres in
 * batches, independently of Redis (a Redis restart loses no settled spend). Each batch has an id and is
 * retried with that id until it is known to have landed, so a lost answer never charges twice.
 * When batches are written is upkeep/spend-flush.ts: periodically, and once more at shutdown.
 */
export class SpendLedger {
  private queued = new Map<string, SpendItem>();
  private queuedRequests = 0;
  /** Batches formed but not yet known to have landed, oldest first. */
  private readonly unflushed: SpendBatch[] = [];
  private flushing: Promise<void> | null = null;
  readonly counters = { batchesFlushed: 0, flushFailures: 0, charged: 0 };

  constructor(private readonly o: SpendLedgerOptions) {}

  /**
   * Queues one request's charge on one of its levels (key, team member, user, team). Zero-cost requests are
   * not written. A request is counted (and its cost summed) once, on its key.
   */
  charge(owner: SpendOwner, generation: string, cost: number): void {
    if (!(cost > 0)) return;
    const gen = generation === "" ? null : Number(generation);
    const slot = `${owner.ledger}|${gen ?? ""}`;
    const item = this.queued.get(slot);
    if (item) item.cost += cost;
    else
      this.queued.set(slot, {
        level: owner.level,
        id: owner.id,
        ...(owner.teamId !== undefined && { teamId: owner.teamId }),
        ...(owner.model !== undefined && { model: owner.model, budgetInterval: owner.budgetInterval ?? null }),
        generation: gen,
        cost,
      });
    if (owner.level !== "key") return;
    this.queuedRequests++;
    this.counters.charged += cost;
  }

  /**
   * What this replica charged on one level (by ledger name) in one spend generation and Postgres has not
   * confirmed yet: added to durable spend when a Redis ledger is seeded again after Redis lost it.
   */
  unflushedSpend(ledger: string, generation: string): number {
    let sum = 0;
    const add = (item: SpendItem) => {
      if (String(item.generation ?? "") === generation && ledgerOf(item.level, item.id, item.teamId, item.model) === ledger) sum += item.cost;
    };
    for (const item of this.queued.values()) add(item);
    for (const batch of this.unflushed) for (const item of batch.items) add(item);
    return sum;
  }

  /** Spend charged here that Postgres has not confirmed yet (what /key/info adds for this replica). */
  get pendingBatches(): number {
    return this.unflushed.length + (this.queued.size > 0 ? 1 : 0);
  }

  /**
   * Writes everything queued so far; resolves when done or when this attempt failed (logged and counted; the
   * same batch is tried again next time). Never rejects. While a flush runs, a call joins it.
   */
  flush(): Promise<void> {
    if (!this.flushing) {
      this.flushing = this.flushAll().finally(() => {
        this.flushing = null;
      });
    }
    return this.flushing;
  }

  private async flushAll(): Promise<void> {
    if (this.queued.size > 0) {
      this.unflushed.push({ batchId: randomUUID(), replicaId: this.o.replicaId, requests: this.queuedRequests, items: [...this.queued.values()] });
      this.queued = new Map();
      this.queuedRequests = 0;
    }
    while (this.unflushed.length > 0) {
      const batch = this.unflushed[0]!;
      try {
        const outcome = await this.o.db.query((q) => flushSpendBatch(q, batch));
        this.unflushed.shift();
        this.counters.batchesFlushed++;
        if (outcome.softBudgetCrossed.length > 0) this.o.onSoftBudgetCrossed?.(outcome.softBudgetCrossed);
        if (outcome.resetSince.length > 0) this.o.onResetSeen(outcome.resetSince.map((r) => ({ ledger: ledgerOf(r.level, r.id, undefined, r.model), generation: r.generation })));
      } catch (err) {
        this.counters.flushFailures++;
        this.o.logger.warn({ err: (err as Error).message, batches: this.unflushed.length }, "spend flush failed; will retry the same batch");
        return;
      }
    }
  }
}
