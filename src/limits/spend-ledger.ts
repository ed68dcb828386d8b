import { randomUUID } from "node:crypto";
import type { Logger } from "../logger.js";
import type { Database } from "../store/database.js";
import { flushSpendBatch, type SpendBatch, type SpendItem } from "../store/spend-store.js";

/**
 * The durable side of spend: every charge this replica makes is queued here and written to Postgres in
 * batches, independently of Redis (a Redis restart loses no settled spend). Each batch has an id and is
 * retried with that id until it is known to have landed, so a lost answer never charges twice.
 * What a crash can lose: the charges of the last `flushIntervalMs` on the crashed replica.
 */
export interface SpendLedgerOptions {
  db: Database;
  logger: Logger;
  replicaId: string;
  flushIntervalMs: number;
  /** Told about keys whose live ledger is of a generation Postgres has reset since. */
  onResetSeen: (keys: Array<{ keyId: string; generation: string }>) => void;
}

export class SpendLedger {
  private queued = new Map<string, SpendItem>();
  private queuedRequests = 0;
  /** Batches formed but not yet known to have landed, oldest first. */
  private readonly unflushed: SpendBatch[] = [];
  private timer: NodeJS.Timeout | null = null;
  private flushing: Promise<void> | null = null;
  readonly counters = { batchesFlushed: 0, flushFailures: 0, charged: 0 };

  constructor(private readonly o: SpendLedgerOptions) {}

  start(): void {
    this.timer = setInterval(() => void this.flush(), this.o.flushIntervalMs);
    this.timer.unref();
  }

  /** Queues one request's charge. Zero-cost requests are not written. */
  charge(keyId: string, generation: string, cost: number): void {
    if (!(cost > 0)) return;
    const gen = generation === "" ? null : Number(generation);
    const slot = `${keyId}|${gen ?? ""}`;
    const item = this.queued.get(slot);
    if (item) item.cost += cost;
    else this.queued.set(slot, { keyId, generation: gen, cost });
    this.queuedRequests++;
    this.counters.charged += cost;
  }

  /** Spend charged here that Postgres has not confirmed yet (what /key/info adds for this replica). */
  get pendingBatches(): number {
    return this.unflushed.length + (this.queued.size > 0 ? 1 : 0);
  }

  /** Writes everything queued so far; resolves when done or when this attempt failed (it is retried). */
  flush(): Promise<void> {
    if (!this.flushing) {
      this.flushing = this.flushAll().finally(() => {
        this.flushing = null;
      });
    }
    return this.flushing;
  }

  /** Stops the timer and flushes what is left, trying until `deadlineMs`. */
  async stop(deadlineMs = 5_000): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    const deadline = Date.now() + deadlineMs;
    for (;;) {
      await this.flushing;
      await this.flush();
      if (this.pendingBatches === 0) return;
      if (Date.now() >= deadline) {
        this.o.logger.error({ batches: this.pendingBatches }, "spend not written to the durable ledger at shutdown");
        return;
      }
      await new Promise((r) => setTimeout(r, 200));
    }
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
        if (outcome.resetSince.length > 0) this.o.onResetSeen(outcome.resetSince);
      } catch (err) {
        this.counters.flushFailures++;
        this.o.logger.warn({ err: (err as Error).message, batches: this.unflushed.length }, "spend flush failed; will retry the same batch");
        return;
      }
    }
  }
}
