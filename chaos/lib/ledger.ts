/**
 * What the chaos workload knows for certain about its keys: every rotation it saw acknowledged, and so
 * what each key should do at a given moment. The invariant checks compare replicas' answers with this.
 */
export interface Generation {
  key: string;
  token: string;
  /** null while this is the lineage's active key. */
  revokeAt: number | null;
  /** When the rotation that replaced this key was acknowledged (ms); null while active. */
  supersededAt: number | null;
}

export interface Lineage {
  id: number;
  keyId: string;
  generations: Generation[];
  /** A rotation is in flight or unresolved: the active key's fate is not known yet. */
  busy: boolean;
  /** When the last acknowledged rotation of this lineage answered (ms). */
  lastCommitAt: number;
  /** Never rotated: these keys settle in every replica's L1, for the fail-static check. */
  stable: boolean;
}

/** COHERENCE.md #2: the hard staleness bound, plus a margin for the probe's own round trip. */
export const STALENESS_BOUND_MS = 2_000;
export const PROBE_MARGIN_MS = 250;

export type Expectation = "valid" | "revoked" | "either";

export function expectationFor(lineage: Lineage, gen: Generation, now: number): Expectation {
  if (gen.revokeAt === null) return lineage.busy ? "either" : "valid";
  if (gen.revokeAt - now > 500) return "valid";
  // Time-based revocation is exact, but a replica learns revoke_at from an event, which may take up to the bound.
  if (now > gen.revokeAt + STALENESS_BOUND_MS + PROBE_MARGIN_MS) return "revoked";
  return "either";
}

export class Ledger {
  readonly lineages: Lineage[] = [];
  /** Every new token the gateway acknowledged with a 200. */
  readonly acknowledged = new Set<string>();
  /**
   * replica process → token → when a probe that saw it accepted started (so it is in that process's L1).
   * Keyed by process, not by name: a replacement replica reuses the name but starts with empty caches,
   * and a probe answered by the old process may be recorded after the replacement started.
   */
  private readonly cached = new Map<number, Map<string, number>>();

  add(lineage: Lineage): void {
    this.lineages.push(lineage);
  }

  commit(lineage: Lineage, next: { key: string; token: string }, revokeAt: number): void {
    const active = lineage.generations.at(-1)!;
    active.revokeAt = revokeAt;
    active.supersededAt = Date.now();
    lineage.generations.push({ key: next.key, token: next.token, revokeAt: null, supersededAt: null });
    lineage.lastCommitAt = Date.now();
    this.acknowledged.add(next.token);
    // The rotation's event evicts every token of the lineage on every replica.
    for (const perReplica of this.cached.values()) for (const g of lineage.generations) perReplica.delete(g.token);
  }

  markCached(replica: number, lineage: Lineage, gen: Generation, probeStartedAt: number): void {
    // A fill that raced the lineage's last event may have been discarded; only count probes well after it.
    if (probeStartedAt < lineage.lastCommitAt + STALENESS_BOUND_MS + PROBE_MARGIN_MS) return;
    let perReplica = this.cached.get(replica);
    if (!perReplica) this.cached.set(replica, (perReplica = new Map()));
    perReplica.set(gen.token, probeStartedAt);
  }

  cachedSince(replica: number, gen: Generation): number | undefined {
    return this.cached.get(replica)?.get(gen.token);
  }

  isCached(replica: number, gen: Generation): boolean {
    return this.cached.get(replica)?.has(gen.token) ?? false;
  }

  /** A replica process that died takes its caches with it. */
  forgetReplica(replica: number): void {
    this.cached.delete(replica);
  }
}
