import type { Logger } from "../logger.js";
import type { SpendLogWriter } from "../spendlogs/spend-log-writer.js";
import type { Database } from "../store/database.js";
import { dropSpendLogsBefore, ensureDailyPartitions } from "../store/spend-log-store.js";
import { Periodic } from "../timers/periodic.js";

const DAY_MS = 86_400_000;
// Partitions exist this many days ahead, so a day's rows never wait for its partition (or land in the default).
const DAYS_AHEAD = 3;
const MAINTENANCE_INTERVAL_MS = 3_600_000;

/**
 * The spend logs' background work on every replica: writes queued rows every `spend_logs.flush_interval_ms`
 * (spendlogs/spend-log-writer.ts), and every hour (and at start) creates the coming days' partitions and drops
 * those past `spend_logs.retention_days`. Both are safe to run on all replicas at once (partition DDL is
 * serialised by an advisory lock; dropping is idempotent).
 */
export class SpendLogUpkeep {
  private readonly flushLoop: Periodic;
  private readonly maintenanceLoop: Periodic;

  constructor(
    private readonly writer: SpendLogWriter,
    private readonly db: Database,
    private readonly logger: Logger,
    flushIntervalMs: number,
    private readonly retentionDays: number,
  ) {
    this.flushLoop = new Periodic({ logger, intervalMs: flushIntervalMs, pass: () => writer.flush(), failureMessage: "spend log flush failed; will retry" });
    this.maintenanceLoop = new Periodic({
      logger,
      intervalMs: MAINTENANCE_INTERVAL_MS,
      jitter: 0.2,
      pass: () => this.maintain(),
      failureMessage: "spend log partition upkeep failed; will retry",
    });
  }

  /** Creates today's and the coming days' partitions before the first row is written, then starts both loops. */
  async start(): Promise<void> {
    await this.maintain().catch((err: Error) => this.logger.warn({ err: err.message }, "spend log partitions could not be prepared; rows go to the default partition meanwhile"));
    this.flushLoop.start();
    this.maintenanceLoop.start();
  }

  async maintain(now = new Date()): Promise<void> {
    const created = await ensureDailyPartitions(this.db, new Date(now.getTime() - DAY_MS), DAYS_AHEAD + 1);
    if (created.length > 0) this.logger.info({ partitions: created }, "spend log partitions created");
    const cutoff = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate()) - this.retentionDays * DAY_MS);
    const { dropped, deleted } = await this.db.query((q) => dropSpendLogsBefore(q, cutoff));
    if (dropped.length > 0 || deleted > 0) this.logger.info({ dropped_partitions: dropped, deleted_rows: deleted }, "spend logs past retention removed");
  }

  /** Stops the loops; the writer's close() (after the requests drained) writes or journals what is left. */
  async stop(): Promise<void> {
    await this.maintenanceLoop.stop();
    await this.flushLoop.stop();
    await this.writer.close();
  }
}
