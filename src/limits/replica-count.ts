/**
 * How many replicas share the limits, for the fail_open_local policy (each limit is divided by it):
 * configured, or the last count of live replicas (taken in the background by upkeep/replica-census.ts).
 * 1 until a count arrives; the last count is kept while none can be taken.
 */
export class ReplicaCount {
  private counted = 1;

  constructor(readonly configured: number | undefined) {}

  get value(): number {
    return this.configured ?? this.counted;
  }

  observe(liveReplicas: number): void {
    this.counted = Math.max(1, liveReplicas);
  }
}
