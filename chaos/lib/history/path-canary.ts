import pg from "pg";
import { checkerNow, type FaultWindow } from "./history.js";

/**
 * Watches the path each replica takes to Postgres: the fault proxies live in the checker's own process, on a
 * machine that also runs three replicas, Postgres and Redis, so at the busiest moments a proxied round trip can
 * take a second or more with no fault injected. A replica that cannot finish a catch-up in time then rightly
 * answers 503 for what it cannot vouch for, and the checker must not call that a violation "with every store
 * reachable". So a canary `SELECT 1` goes through each replica's own proxy every `intervalMs`; every round trip
 * slower than `slowMs` becomes a window in which that path counts as impaired (the report shows how many there
 * were and how long they lasted, so a harness that is too slow to judge by shows up as such).
 */
export class PathCanary {
  readonly windows: FaultWindow[] = [];
  private stopped = false;
  private readonly loops: Promise<void>[] = [];

  constructor(
    private readonly paths: ReadonlyArray<{ name: string; url: () => string }>,
    private readonly record: (window: FaultWindow) => void,
    private readonly slowMs = 400,
    private readonly intervalMs = 100,
  ) {}

  start(): void {
    for (const path of this.paths) this.loops.push(this.watch(path));
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.all(this.loops);
  }

  /**
   * Slow windows outside the injected faults (and `tailMs` after each), and the time they covered, for the report:
   * a canary stuck behind a blackholed proxy says nothing new, one slowed on a quiet path says the machine was busy.
   */
  summary(injected: readonly FaultWindow[], tailMs: number): { windows: number; totalMs: number; longestMs: number } {
    const spans = this.windows.filter((w) => !injected.some((f) => !this.windows.includes(f) && w.end >= f.start && w.start <= f.end + tailMs)).map((w) => w.end - w.start);
    return { windows: spans.length, totalMs: Math.round(spans.reduce((a, b) => a + b, 0)), longestMs: Math.round(Math.max(0, ...spans)) };
  }

  private async watch(path: { name: string; url: () => string }): Promise<void> {
    let client: pg.Client | null = null;
    while (!this.stopped) {
      const sent = checkerNow();
      try {
        if (!client) {
          const c = new pg.Client({ connectionString: path.url(), connectionTimeoutMillis: 5_000, query_timeout: 5_000 });
          c.on("error", () => {});
          client = c;
          await c.connect();
        }
        await client.query("SELECT 1");
        const answered = checkerNow();
        if (answered - sent > this.slowMs) this.slow(path.name, sent, answered);
      } catch {
        // Cut by a fault (those are windows of their own) or timed out: a fresh connection next time.
        const failedAt = checkerNow();
        if (failedAt - sent > this.slowMs) this.slow(path.name, sent, failedAt);
        void client?.end().catch(() => {});
        client = null;
      }
      await new Promise((r) => setTimeout(r, this.intervalMs));
    }
    await client?.end().catch(() => {});
  }

  private slow(name: string, start: number, end: number): void {
    const window: FaultWindow = {
      name: `the checker's own proxy to Postgres for ${name} answered in ${Math.round(end - start)} ms`,
      start,
      end,
      postgresImpaired: true,
      partition: false,
      notificationsLost: false,
    };
    this.windows.push(window);
    this.record(window);
  }
}
