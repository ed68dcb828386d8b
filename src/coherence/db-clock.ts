import { performance } from "node:perf_hooks";

// Samples older than this are forgotten, so a database clock stepped back is followed within this long.
const WINDOW_MS = 30_000;

interface Sample {
  /** database time minus monotonic time at the answer */
  offset: number;
  at: number;
}

/**
 * The cluster's one clock for validity (docs/coherence.md #2): the database's. `expires` and `revoke_at` are written
 * by Postgres, so they are compared with Postgres's time, not with this replica's wall clock, which may run
 * fast or slow (a replica 30 s fast would end every grace period 30 s early).
 *
 * The database time is sampled by queries the replica runs anyway (every catch-up reads clock_timestamp()),
 * and carried forward between samples by the monotonic clock, which no NTP step or `date -s` moves.
 *
 * A sample says "the database read T before this answer arrived": the database clock at the arrival is at
 * least T. The estimate is the largest such lower bound of the last `WINDOW_MS`, so it is never ahead of the
 * database (a grace period never ends early) and it is behind by the quickest recent answer's return trip
 * (a grace may end that many milliseconds late, well inside the staleness bound). A query that waited for a
 * pool connection or a reconnection only gives a weaker bound, and cannot push the clock forward.
 */
export class DbClock {
  private offset: number;
  private samples: Sample[] = [];

  constructor() {
    // Until the first sample (taken before the replica serves): this machine's wall clock.
    this.offset = Date.now() - performance.now();
  }

  /** Milliseconds since the epoch, by the database's clock. */
  now(): number {
    return performance.now() + this.offset;
  }

  /** How far this replica's wall clock is behind the database's (ms; negative when it runs ahead). */
  offsetMs(): number {
    return this.now() - Date.now();
  }

  /** A reading `dbMs` of the database clock, taken by a query whose answer arrived at `answeredAt` (performance.now()). */
  observe(dbMs: number, answeredAt: number): void {
    this.samples.push({ offset: dbMs - answeredAt, at: answeredAt });
    while (this.samples.length > 0 && answeredAt - this.samples[0]!.at > WINDOW_MS) this.samples.shift();
    let best = Number.NEGATIVE_INFINITY;
    for (const s of this.samples) best = Math.max(best, s.offset);
    this.offset = best;
  }
}

/** Monotonic milliseconds, for freshness and durations: never the wall clock. */
export function monotonicMs(): number {
  return performance.now();
}
