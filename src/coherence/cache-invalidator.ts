import type { L1Cache } from "../auth/l1-cache.js";
import type { L2Cache } from "../auth/l2-cache.js";
import { Listeners } from "../listeners.js";
import type { Logger } from "../logger.js";
import { reinstated } from "../testing/reinstated-bugs.js";

/**
 * The one call that makes cached copies of some token hashes stale on this replica: "invalidate this
 * token hash".
 *
 * L1 is evicted at once (cancelling any fill in flight), and the L2 tombstone is written after. Until the
 * tombstone is in place, L2 may still hold the old record, so fills of those hashes skip L2 and read
 * Postgres: a request arriving between the two steps cannot refill L1 from the old L2 record
 * (docs/coherence.md #5). Eviction therefore costs no Redis round trip on the notification path.
 */
export class CacheInvalidator {
  private readonly pendingTombstones = new Map<string, number>();
  /**
   * Told of every cache key an applied event names, or "all" when events were missed: for what is kept outside
   * L1/L2 (the database models, models/model-registry.ts).
   */
  readonly changed: Listeners<[changed: readonly string[] | "all"]>;

  constructor(
    private readonly l1: L1Cache,
    private readonly l2: L2Cache,
    /** The token filter's keeper: told of every token an event names, and to rebuild when events were lost. */
    private readonly tokens?: { noteTokens(tokens: readonly string[]): void; rebuild(): Promise<void> },
    /** Where a subscriber of `changed` that fails is logged. */
    logger?: Logger,
  ) {
    this.changed = new Listeners("the cache invalidator's changes", logger);
  }

  /** Evicts L1 synchronously, then tombstones L2; resolves when both are done, true if the tombstones were written. */
  invalidate(changed: readonly string[], version: number): Promise<boolean> {
    let tokens = reinstated("team-stale") ? changed.filter((t) => !t.startsWith("team:")) : changed;
    if (reinstated("model-stale")) tokens = tokens.filter((t) => !t.startsWith("models:"));
    this.changed.emit(tokens);
    this.tokens?.noteTokens(tokens);
    for (const t of tokens) {
      this.pendingTombstones.set(t, (this.pendingTombstones.get(t) ?? 0) + 1);
      this.l1.invalidate(t);
    }
    return this.l2.invalidate(tokens, version).finally(() => {
      for (const t of tokens) {
        const n = this.pendingTombstones.get(t)! - 1;
        if (n === 0) this.pendingTombstones.delete(t);
        else this.pendingTombstones.set(t, n);
      }
    });
  }

  /** True while an L2 tombstone for `hash` is still being written: L2 must not be read for it. */
  l2Pending(hash: string): boolean {
    return this.pendingTombstones.size > 0 && this.pendingTombstones.has(hash);
  }

  /** When events may have been missed and cannot be replayed: forget every L1 entry. */
  dropL1(): void {
    this.l1.clear();
    this.changed.emit("all");
    void this.tokens?.rebuild();
  }
}
