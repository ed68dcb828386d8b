import type { Logger } from "../logger.js";
import type { Database } from "../store/database.js";

/**
 * How many replicas share the limits, for the fail_open_local policy. Configured, or counted: every
 * replica holds one LISTEN connection named `gatehouse-listen:<replica id>` (coherence.ts), so
 * pg_stat_activity knows who is alive without a registry table or any writes. Refreshed in the
 * background; the last count is kept while Postgres cannot be asked.
 */
const COUNT_LISTENERS = `
SELECT count(*)::int AS n FROM pg_stat_activity
WHERE datname = current_database() AND application_name LIKE 'gatehouse-listen:%'`;

export class ReplicaCount {
  private counted = 1;
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly db: Database,
    private readonly logger: Logger,
    private readonly configured: number | undefined,
    private readonly refreshMs = 10_000,
  ) {}

  get value(): number {
    return this.configured ?? this.counted;
  }

  start(): void {
    if (this.configured !== undefined) return;
    void this.refresh();
    this.timer = setInterval(() => void this.refresh(), this.refreshMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  async refresh(): Promise<void> {
    try {
      const { n } = await this.db.query(async (q) => (await q.query<{ n: number }>(COUNT_LISTENERS)).rows[0]!);
      this.counted = Math.max(1, n);
    } catch (err) {
      this.logger.debug({ err: (err as Error).message }, "could not count replicas; keeping the last count");
    }
  }
}
