import { LRUCache } from "lru-cache";
import type { Admission, KeyLimits, Reservation, Settlement } from "./admission.js";

const WINDOW_MS = 60_000;
// As in limits-reserve.lua: an exact log of admission times up to this rpm, two smoothed minutes above.
const RPM_EXACT_MAX = 1_000;

/** Two fixed minutes; the previous one weighted by its overlap with the sliding minute. */
interface Window {
  bucket: number;
  current: number;
  previous: number;
}

function roll(w: Window, bucket: number): void {
  if (w.bucket === bucket) return;
  w.previous = w.bucket === bucket - 1 ? w.current : 0;
  w.current = 0;
  w.bucket = bucket;
}

function used(w: Window, into: number): number {
  return w.previous * (1 - into / WINDOW_MS) + w.current;
}

interface KeyState {
  inFlight: Map<string, { cost: number; expiresAt: number }>;
  reserved: number;
  requestTimes: number[];
  requestBucket: Window;
  tokenBucket: Window;
  /** Spend of the period when this replica started enforcing alone, and what it charged since. */
  baseSpend: number;
  localSpend: number;
}

/**
 * The fallback while Redis is unreachable (policy `fail_open_local`, docs/limits.md): the same limits,
 * enforced by this replica alone, each divided by the number of live replicas. A balanced load then
 * stays within the cluster-wide limit; an unbalanced one can exceed it by at most the share of the
 * replicas that are idle. The budget share starts from the last spend this replica knew (from Redis,
 * or from Postgres when it never saw one).
 */
export class LocalLimiter {
  private readonly states = new LRUCache<string, KeyState>({ max: 100_000 });

  constructor(private readonly reservationTtlMs: number) {}

  admit(limits: KeyLimits, r: Reservation, replicas: number, knownSpend: number, now = Date.now()): Admission {
    const state = this.stateOf(limits.keyId, knownSpend);
    for (const [id, held] of state.inFlight) {
      if (held.expiresAt <= now) this.release(state, id);
    }
    const share = (limit: number) => Math.ceil(limit / replicas);
    const spend = state.baseSpend + state.localSpend;
    if (limits.maxBudget !== null) {
      if (spend >= limits.maxBudget) return { kind: "budget", spend };
      const allowance = (limits.maxBudget - state.baseSpend) / replicas;
      if (state.localSpend + state.reserved >= allowance) return { kind: "budget_reserved", spend };
    }
    if (limits.maxParallelRequests !== null && state.inFlight.size >= share(limits.maxParallelRequests)) {
      return { kind: "parallel", inFlight: state.inFlight.size };
    }
    const bucket = Math.floor(now / WINDOW_MS);
    const into = now % WINDOW_MS;
    let requests = null;
    const rpm = limits.rpmLimit === null ? null : share(limits.rpmLimit);
    if (rpm !== null && rpm <= RPM_EXACT_MAX) {
      const times = state.requestTimes;
      while (times.length > 0 && times[0]! <= now - WINDOW_MS) times.shift();
      const resetMs = times.length > 0 ? times[0]! + WINDOW_MS - now : WINDOW_MS;
      if (times.length >= rpm) return { kind: "rpm", retryAfterMs: resetMs };
      requests = { remaining: rpm - times.length - 1, resetMs };
    } else if (rpm !== null) {
      roll(state.requestBucket, bucket);
      const count = used(state.requestBucket, into);
      if (count >= rpm) return { kind: "rpm", retryAfterMs: WINDOW_MS - into };
      requests = { remaining: Math.max(0, Math.floor(rpm - count - 1)), resetMs: WINDOW_MS - into };
    }
    let tokens = null;
    const tb = state.tokenBucket;
    roll(tb, bucket);
    if (limits.tpmLimit !== null) {
      const limit = share(limits.tpmLimit);
      const count = used(tb, into);
      if (count >= limit) return { kind: "tpm", retryAfterMs: WINDOW_MS - into };
      tokens = { remaining: Math.max(0, Math.floor(limit - count - r.tokens)), resetMs: WINDOW_MS - into };
    }
    state.inFlight.set(r.requestId, { cost: r.cost, expiresAt: now + this.reservationTtlMs });
    state.reserved += r.cost;
    if (rpm !== null && rpm <= RPM_EXACT_MAX) state.requestTimes.push(now);
    else if (rpm !== null) state.requestBucket.current++;
    tb.current += r.tokens;
    return { kind: "ok", generation: "", spend, requests, tokens };
  }

  settle(s: Settlement, reservedTokens: number): void {
    const state = this.states.get(s.keyId);
    if (!state) return;
    this.release(state, s.requestId);
    state.localSpend += s.cost;
    state.tokenBucket.current = Math.max(0, state.tokenBucket.current + s.tokens - reservedTokens);
  }

  /** A key's spend was reset: its budget share starts again from the durable spend. */
  forgetKey(keyId: string): void {
    this.states.delete(keyId);
  }

  /** Redis is back: the cluster-wide ledger takes over, and local state starts afresh next time. */
  forget(): void {
    this.states.clear();
  }

  private stateOf(keyId: string, knownSpend: number): KeyState {
    let state = this.states.get(keyId);
    if (!state) {
      state = {
        inFlight: new Map(),
        reserved: 0,
        requestTimes: [],
        requestBucket: { bucket: 0, current: 0, previous: 0 },
        tokenBucket: { bucket: 0, current: 0, previous: 0 },
        baseSpend: knownSpend,
        localSpend: 0,
      };
      this.states.set(keyId, state);
    }
    return state;
  }

  private release(state: KeyState, id: string): void {
    const held = state.inFlight.get(id);
    if (!held) return;
    state.inFlight.delete(id);
    state.reserved = Math.max(0, state.reserved - held.cost);
  }
}
