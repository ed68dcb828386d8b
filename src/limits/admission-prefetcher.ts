import { randomUUID } from "node:crypto";
import type { Admission, LimitSubject, RequestLimits } from "./admission.js";
import type { Charge } from "./pricing.js";

/**
 * Admissions reserved ahead of the request that will use them (docs/limits.md, "Prefetched admissions").
 *
 * A limited key's request normally waits for one Redis round trip before it is forwarded: the admit
 * script. For a key far from every one of its limits, this replica asks Redis for the *next* admission
 * as soon as the current one is through, in the background, with the very same script: the next
 * request of that key finds it ready and is forwarded at once. Because a prefetched admission is a real
 * reservation in the cluster-wide ledger (budget reserved, parallel slot taken, request counted), no
 * limit can be exceeded by it; the only cost is that capacity held ready is not available to other
 * replicas meanwhile, and it is held only while the key has ample room left (ROOM_REQUESTS more such
 * requests on every limit, ROOM_PARALLEL parallel slots). Near a limit, every request is admitted by
 * its own round trip, as exact as before.
 *
 * A prefetched admission is reserved on every level of the key's requests (key, team member, user, team), and
 * is used only by a request that fits in it (worst-case cost and tokens), under the same levels and limits (a
 * /key/update, /team/update or /user/update since is seen through the auth records), within `maxAgeMs`;
 * otherwise it is cancelled: its reservations, parallel slots and places in the rate windows are given back.
 */

/** A key must have room for this many more requests like the current one before any is held ready. */
export const ROOM_REQUESTS = 64;
/** ...and this many free parallel slots. */
export const ROOM_PARALLEL = 8;

export interface PrefetchedAdmission {
  requestId: string;
  limits: RequestLimits;
  /** What Redis holds reserved for it: a request whose worst case fits in this may use it. */
  reserved: Charge;
  admission: Extract<Admission, { kind: "ok" }>;
  /** performance.now() after which it is not used. */
  usableUntil: number;
}

export interface PrefetchSource {
  admit(limits: RequestLimits, reservation: { requestId: string; cost: number; tokens: number }, holdMs: number): Promise<Admission>;
  cancel(limits: RequestLimits, requestId: string): Promise<void>;
}

export interface PrefetcherOptions {
  source: PrefetchSource;
  /** Admissions held ready per key on this replica; 0 turns prefetching off. */
  depth: number;
  /** How long one waits for a request before it is given back. */
  maxAgeMs: number;
  onError: (err: unknown) => void;
}

interface KeySlot {
  ready: PrefetchedAdmission[];
  fetching: number;
}

export class AdmissionPrefetcher {
  readonly counters = { fetched: 0, used: 0, cancelled: 0, failed: 0 };
  private readonly slots = new Map<string, KeySlot>();
  private readonly pending = new Set<Promise<unknown>>();
  private closed = false;

  constructor(private readonly o: PrefetcherOptions) {}

  /** False when prefetching is off (depth 0): nothing is ever held, so nothing needs giving back. */
  get enabled(): boolean {
    return this.o.depth > 0;
  }

  /** How long an admission held ready may wait for a request. */
  get maxAgeMs(): number {
    return this.o.maxAgeMs;
  }

  /** A ready admission this request may use, or undefined (then it is admitted by its own round trip). */
  take(limits: RequestLimits, worst: Charge): PrefetchedAdmission | undefined {
    if (limits.heldAs === null) return undefined;
    const slot = this.slots.get(limits.heldAs);
    if (!slot || slot.ready.length === 0) return undefined;
    const now = performance.now();
    for (let i = 0; i < slot.ready.length; i++) {
      const candidate = slot.ready[i]!;
      if (candidate.usableUntil <= now || !sameLimits(candidate.limits, limits)) {
        // Stale or made under other limits: give it back, whatever this request does.
        slot.ready.splice(i--, 1);
        this.cancel(candidate);
        continue;
      }
      if (fits(worst, candidate.reserved)) {
        slot.ready.splice(i, 1);
        this.counters.used++;
        this.forgetIfEmpty(limits.heldAs, slot);
        return candidate;
      }
    }
    this.forgetIfEmpty(limits.heldAs, slot);
    return undefined;
  }

  /**
   * After an admission through Redis (its own or a prefetched one): if the key has ample room on every
   * limit, reserve the next admission now, sized for a request like this one with margin.
   */
  replenish(limits: RequestLimits, worst: Charge, after: Extract<Admission, { kind: "ok" }>): void {
    const heldAs = limits.heldAs;
    if (this.o.depth === 0 || this.closed || heldAs === null) return;
    const size: Charge = { promptTokens: worst.promptTokens * 2, completionTokens: worst.completionTokens, cost: worst.cost * 2 };
    if (!hasRoom(limits, size, after)) return;
    let slot = this.slots.get(heldAs);
    if (!slot) {
      slot = { ready: [], fetching: 0 };
      this.slots.set(heldAs, slot);
    }
    if (slot.ready.length + slot.fetching >= this.o.depth) return;
    slot.fetching++;
    const requestId = randomUUID();
    const usableUntil = performance.now() + this.o.maxAgeMs;
    const reservation = { requestId, cost: size.cost, tokens: size.promptTokens + size.completionTokens };
    // Sent on the next turn of the event loop, not now: writing to the Redis socket costs tens of µs,
    // and now is the request path (this request is about to be forwarded).
    const fetched = new Promise<void>((resolve) => setImmediate(resolve))
      .then(() => this.o.source.admit(limits, reservation, this.o.maxAgeMs))
      .then(
        (admission) => {
          slot.fetching--;
          if (admission.kind !== "ok") {
            this.forgetIfEmpty(heldAs, slot);
            return;
          }
          this.counters.fetched++;
          const ready: PrefetchedAdmission = { requestId, limits, reserved: size, admission, usableUntil };
          if (this.closed) this.cancel(ready);
          else slot.ready.push(ready);
        },
        (err: unknown) => {
          slot.fetching--;
          this.counters.failed++;
          this.forgetIfEmpty(heldAs, slot);
          this.o.onError(err);
        },
      );
    this.track(fetched);
  }

  /** Gives back every admission held ready on a level whose ledger was reset (a key's, a team's, ...). */
  forgetLedger(ledger: string): void {
    for (const [keyId, slot] of this.slots) {
      for (let i = 0; i < slot.ready.length; i++) {
        if (!slot.ready[i]!.limits.subjects.some((s) => s.ledger === ledger)) continue;
        this.cancel(slot.ready[i]!);
        slot.ready.splice(i--, 1);
      }
      this.forgetIfEmpty(keyId, slot);
    }
  }

  /**
   * Gives back every admission held ready (a new database history: they were admitted against the old one's
   * ledgers). Fetches in flight still deliver theirs; those came from the ledgers of the namespace they named.
   */
  forgetAll(): void {
    for (const [keyId, slot] of this.slots) {
      for (const ready of slot.ready.splice(0)) this.cancel(ready);
      this.forgetIfEmpty(keyId, slot);
    }
  }

  /** Gives back everything held ready and waits (bounded by Redis's command timeout) until Redis has it. */
  async close(): Promise<void> {
    this.closed = true;
    // Fetches still in flight cancel what they bring (closed is set), so repeat until nothing is pending.
    do {
      for (const slot of this.slots.values()) for (const ready of slot.ready.splice(0)) this.cancel(ready);
      await Promise.allSettled([...this.pending]);
    } while (this.pending.size > 0);
    this.slots.clear();
  }

  /** Admissions of a key held ready or being fetched right now (tests). */
  inProgress(keyId: string): number {
    const slot = this.slots.get(keyId);
    return slot ? slot.ready.length + slot.fetching : 0;
  }

  /** Admissions held ready right now, for one key or across keys (tests, bench). */
  held(keyId?: string): number {
    if (keyId !== undefined) return this.slots.get(keyId)?.ready.length ?? 0;
    let n = 0;
    for (const slot of this.slots.values()) n += slot.ready.length;
    return n;
  }

  /**
   * Gives back every admission held past `maxAgeMs` (run in the background by upkeep/prefetch-expiry.ts).
   * take() never uses one anyway; this bounds how long capacity of a key gone quiet stays held in Redis.
   */
  cancelExpired(): void {
    const now = performance.now();
    for (const [keyId, slot] of this.slots) {
      for (let i = 0; i < slot.ready.length; i++) {
        if (slot.ready[i]!.usableUntil > now) continue;
        this.cancel(slot.ready[i]!);
        slot.ready.splice(i--, 1);
      }
      this.forgetIfEmpty(keyId, slot);
    }
  }

  private cancel(ready: PrefetchedAdmission): void {
    this.counters.cancelled++;
    // If Redis cannot be told, the reservation expires after limits.reservation_ttl_ms like a dead
    // replica's, and the rate-window entry after its minute.
    this.track(this.o.source.cancel(ready.limits, ready.requestId).catch((err: unknown) => this.o.onError(err)));
  }

  private track(p: Promise<unknown>): void {
    this.pending.add(p);
    void p.finally(() => this.pending.delete(p));
  }

  private forgetIfEmpty(keyId: string, slot: KeySlot): void {
    if (slot.ready.length === 0 && slot.fetching === 0 && this.slots.get(keyId) === slot) this.slots.delete(keyId);
  }
}

function sameLimits(a: RequestLimits, b: RequestLimits): boolean {
  if (a === b) return true;
  if (a.subjects.length !== b.subjects.length) return false;
  return a.subjects.every((s, i) => sameSubject(s, b.subjects[i]!));
}

function sameSubject(a: LimitSubject, b: LimitSubject): boolean {
  return a.ledger === b.ledger && a.maxBudget === b.maxBudget && a.rpmLimit === b.rpmLimit && a.tpmLimit === b.tpmLimit && a.maxParallelRequests === b.maxParallelRequests;
}

function fits(worst: Charge, reserved: Charge): boolean {
  return worst.cost <= reserved.cost && worst.promptTokens + worst.completionTokens <= reserved.promptTokens + reserved.completionTokens;
}

/** Room for ROOM_REQUESTS more requests of `size` on every limit of every level, as of `after`. */
function hasRoom(limits: RequestLimits, size: Charge, after: Extract<Admission, { kind: "ok" }>): boolean {
  return limits.subjects.every((s, i) => {
    const left = after.levels[i];
    if (!left) return false;
    if (s.rpmLimit !== null && (left.requests === null || left.requests.remaining < ROOM_REQUESTS)) return false;
    if (s.tpmLimit !== null && (left.tokens === null || left.tokens.remaining < ROOM_REQUESTS * (size.promptTokens + size.completionTokens))) return false;
    if (s.maxBudget !== null && (left.budgetLeft === null || left.budgetLeft < ROOM_REQUESTS * size.cost)) return false;
    if (s.maxParallelRequests !== null && (left.parallelLeft === null || left.parallelLeft < ROOM_PARALLEL)) return false;
    return true;
  });
}
