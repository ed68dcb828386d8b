/** One event's propagation as this replica saw it (`/debug/coherence`, docs/api.md). */
export interface AppliedLag {
  id: number;
  /** Commit → evicted here, ms (both on the database's clock). */
  lagMs: number;
  appliedAt: number;
  /** CPU time of applying it on this replica (evictions; the L2 tombstone is a round trip, not counted), µs. */
  applyUs: number;
}

/**
 * The last `capacity` applied events' lags, in the order they were applied, in memory allocated once: a replica
 * applying events for days holds the same bytes on its first minute as on its last (an array of objects grew the
 * old space for the first 20,000 events and shifted the whole array on every event after that).
 */
export class LagHistory {
  private readonly ids: Float64Array;
  private readonly lagMs: Float64Array;
  private readonly appliedAt: Float64Array;
  private readonly applyUs: Float64Array;
  /**
   * The ids recorded, each at `id % seenSlots`: an event applied a second time (an id applied ahead of a gap whose
   * memory was given up under overload is applied again by the catch-up, thousands of events later) is measured
   * once. Ids are issued in sequence, so no two of the last `seenSlots` share a slot.
   */
  private readonly seen: Float64Array;
  /** Where the next entry goes. */
  private next = 0;
  private count = 0;

  constructor(private readonly capacity: number) {
    this.ids = new Float64Array(capacity);
    this.lagMs = new Float64Array(capacity);
    this.appliedAt = new Float64Array(capacity);
    this.applyUs = new Float64Array(capacity);
    this.seen = new Float64Array(capacity * 2);
  }

  /** Records an event's lag; false (and nothing recorded) when the same id was recorded before. */
  record(id: number, lagMs: number, appliedAt: number, applyUs: number): boolean {
    const seenSlot = id % this.seen.length;
    if (this.seen[seenSlot] === id) return false;
    this.seen[seenSlot] = id;
    const at = this.next;
    this.ids[at] = id;
    this.lagMs[at] = lagMs;
    this.appliedAt[at] = appliedAt;
    this.applyUs[at] = applyUs;
    this.next = (at + 1) % this.capacity;
    if (this.count < this.capacity) this.count++;
    return true;
  }

  /** The recorded events with an id above `afterId`, oldest first. */
  since(afterId: number): AppliedLag[] {
    const out: AppliedLag[] = [];
    for (let back = this.count; back >= 1; back--) {
      const at = this.slot(back);
      if (this.ids[at]! > afterId) out.push({ id: this.ids[at]!, lagMs: this.lagMs[at]!, appliedAt: this.appliedAt[at]!, applyUs: this.applyUs[at]! });
    }
    return out;
  }

  /** The lags of the last `n` events, in ms, oldest first. */
  lastLags(n: number): number[] {
    const out: number[] = [];
    for (let back = Math.min(n, this.count); back >= 1; back--) out.push(this.lagMs[this.slot(back)]!);
    return out;
  }

  clear(): void {
    this.next = 0;
    this.count = 0;
    this.seen.fill(0);
  }

  /** The slot of the entry recorded `back` entries ago (1: the newest). */
  private slot(back: number): number {
    return (this.next - back + this.capacity) % this.capacity;
  }
}
