import type { Logger } from "../logger.js";
import type { SpendLedger } from "../limits/spend-ledger.js";
import { Periodic } from "../timers/periodic.js";

/**
 * Writes the spend this replica charged (limits/spend-ledger.ts) to Postgres every `flushIntervalMs`, and
 * what is left at shutdown. What a crash can lose: the charges of the last interval on the crashed replica.
 */
export class SpendFlush {
  private readonly loop: Periodic;

  constructor(
    private readonly ledger: SpendLedger,
    private readonly logger: Logger,
    flushIntervalMs: number,
  ) {
    this.loop = new Periodic({ logger, intervalMs: flushIntervalMs, pass: () => ledger.flush(), failureMessage: "spend flush failed; will retry" });
  }

  start(): void {
    this.loop.start();
  }

  /** Stops the loop and flushes what is left (the requests have drained), trying until `deadlineMs`. */
  async stop(deadlineMs = 5_000): Promise<void> {
    await this.loop.stop();
    const deadline = Date.now() + deadlineMs;
    for (;;) {
      // The first call may join a flush already under way; the second takes everything queued by then.
      await this.ledger.flush();
      await this.ledger.flush();
      if (this.ledger.pendingBatches === 0) return;
      if (Date.now() >= deadline) {
        this.logger.error({ batches: this.ledger.pendingBatches }, "spend not written to the durable ledger at shutdown");
        return;
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}
