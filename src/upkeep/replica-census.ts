import type { Logger } from "../logger.js";
import type { ReplicaCount } from "../limits/replica-count.js";
import type { Database } from "../store/database.js";
import { countLiveReplicas } from "../store/replica-store.js";
import { Periodic } from "../timers/periodic.js";

/**
 * Counts the live replicas (store/replica-store.ts) every `refreshMs` for limits/replica-count.ts, unless
 * the count is configured. A count that fails keeps the last one; it is routine while Postgres is away.
 */
export class ReplicaCensus {
  private readonly loop: Periodic;

  constructor(
    private readonly db: Database,
    logger: Logger,
    private readonly count: ReplicaCount,
    refreshMs = 10_000,
  ) {
    this.loop = new Periodic({
      logger,
      intervalMs: refreshMs,
      pass: () => this.refresh(),
      failureMessage: "could not count replicas; keeping the last count",
      failureLevel: "debug",
    });
  }

  start(): void {
    if (this.count.configured === undefined) this.loop.start({ now: true });
  }

  stop(): Promise<void> {
    return this.loop.stop();
  }

  async refresh(): Promise<void> {
    this.count.observe(await this.db.query(countLiveReplicas));
  }
}
