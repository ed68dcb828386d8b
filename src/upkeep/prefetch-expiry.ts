import type { Logger } from "../logger.js";
import type { AdmissionPrefetcher } from "../limits/admission-prefetcher.js";
import { Periodic } from "../timers/periodic.js";

/**
 * Gives back prefetched admissions (limits/admission-prefetcher.ts) that no request took within their
 * maximum age, twice per that age: the capacity a key that went quiet held ready returns to the cluster.
 * Nothing to do without Redis (no prefetcher) or with prefetching off.
 */
export class PrefetchExpiry {
  private readonly loop: Periodic | null;

  constructor(prefetch: AdmissionPrefetcher | null, logger: Logger) {
    this.loop = prefetch?.enabled
      ? new Periodic({
          logger,
          intervalMs: Math.max(50, prefetch.maxAgeMs / 2),
          pass: () => prefetch.cancelExpired(),
          failureMessage: "giving back expired prefetched admissions failed; will retry",
        })
      : null;
  }

  start(): void {
    this.loop?.start();
  }

  stop(): Promise<void> {
    return this.loop?.stop() ?? Promise.resolve();
  }
}
