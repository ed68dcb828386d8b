import { LRUCache } from "lru-cache";
import type { CachedRecord } from "./auth-record.js";

export interface L1Entry {
  record: CachedRecord | null;
  storedAt: number;
}

export interface FillTicket {
  readonly hash: string;
  cancelled: boolean;
}

export interface L1Options {
  maxEntries: number;
  ttlMs: number;
  negativeTtlMs: number;
}

/**
 * L1: the in-process, bounded LRU of auth records by token hash. A `null` record is a cached miss.
 *
 * Fills are ticketed: a fill begins before the read from L2/Postgres and lands only if no invalidation
 * of that hash (or of everything) happened in between. This is the memcache "stale set" guard
 * (docs/coherence.md #5): without it, a read that raced an update could re-cache the old record after the
 * eviction and keep it alive.
 */
export class L1Cache {
  private readonly lru: LRUCache<string, L1Entry>;
  private readonly fills = new Map<string, Set<FillTicket>>();

  constructor(private readonly options: L1Options) {
    // ttlResolution 0: the clock is read on each look-up. lru-cache otherwise keeps a reading for a millisecond and
    // starts a timer to forget it, a timer a millisecond under load: dearer than the read it saves.
    this.lru = new LRUCache<string, L1Entry>({ max: options.maxEntries, ttl: options.ttlMs, ttlAutopurge: false, ttlResolution: 0 });
  }

  get(hash: string): L1Entry | undefined {
    return this.lru.get(hash);
  }

  get size(): number {
    return this.lru.size;
  }

  beginFill(hash: string): FillTicket {
    const ticket: FillTicket = { hash, cancelled: false };
    let set = this.fills.get(hash);
    if (!set) {
      set = new Set();
      this.fills.set(hash, set);
    }
    set.add(ticket);
    return ticket;
  }

  /** Lands the fill unless it was cancelled by an invalidation; returns whether it landed. */
  /**
   * `miss`: how long "no such record" is kept. Keys keep a miss briefly (a key generated elsewhere must work at once
   * even where its event is late); a team's or a user's absence is kept like a record, since creating one is an
   * event that evicts it (and the replica's freshness bound covers lost events).
   */
  completeFill(ticket: FillTicket, record: CachedRecord | null, miss: "brief" | "like-a-record" = "brief"): boolean {
    this.endFill(ticket);
    if (ticket.cancelled) return false;
    if (record === null && miss === "like-a-record") {
      this.lru.set(ticket.hash, { record, storedAt: Date.now() });
    } else if (record === null) {
      if (this.options.negativeTtlMs > 0) this.lru.set(ticket.hash, { record, storedAt: Date.now() }, { ttl: this.options.negativeTtlMs });
    } else {
      this.lru.set(ticket.hash, { record, storedAt: Date.now() });
    }
    return true;
  }

  abandonFill(ticket: FillTicket): void {
    this.endFill(ticket);
  }

  /** Evicts one hash and cancels any fill of it still in flight. */
  invalidate(hash: string): void {
    this.lru.delete(hash);
    const pending = this.fills.get(hash);
    if (pending) for (const t of pending) t.cancelled = true;
  }

  /** Drops everything, including fills in flight: used when events may have been missed (docs/coherence.md #6). */
  clear(): void {
    this.lru.clear();
    for (const set of this.fills.values()) for (const t of set) t.cancelled = true;
  }

  private endFill(ticket: FillTicket): void {
    const set = this.fills.get(ticket.hash);
    if (!set) return;
    set.delete(ticket);
    if (set.size === 0) this.fills.delete(ticket.hash);
  }
}
