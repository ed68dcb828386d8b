import type { L1Cache } from "./l1-cache.js";
import type { L2Cache } from "./l2-cache.js";

/**
 * The one call that makes cached copies of some token hashes stale on this replica: "invalidate this
 * token hash". Order matters. L2 is tombstoned first and L1 evicted second, so a request arriving after
 * the eviction cannot refill L1 from the old L2 record; a fill already in flight is cancelled by the
 * eviction (COHERENCE.md #5).
 */
export class CacheInvalidator {
  constructor(
    private readonly l1: L1Cache,
    private readonly l2: L2Cache,
  ) {}

  async invalidate(tokens: readonly string[], version: number): Promise<void> {
    await Promise.all(tokens.map((t) => this.l2.invalidate(t, version)));
    for (const t of tokens) this.l1.invalidate(t);
  }

  /** When events may have been missed and cannot be replayed: forget every L1 entry. */
  dropL1(): void {
    this.l1.clear();
  }
}
