import { LRUCache } from "lru-cache";
import { budgetSpent, type Admission, type LevelAdmission, type RequestLimits, type Reservation, type Settlement } from "./admission.js";

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

interface LevelState {
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
  private readonly states = new LRUCache<string, LevelState>({ max: 100_000 });

  constructor(private readonly reservationTtlMs: number) {}

  /**
   * Checks every level first and reserves on all only if each has room, as the Redis script does.
   * `knownSpend[i]` is where level i's budget share starts when this replica has no state for it yet.
   */
  admit(limits: RequestLimits, r: Reservation, replicas: number, knownSpend: number[], now = Date.now()): Admission {
    const share = (limit: number) => Math.ceil(limit / replicas);
    const bucket = Math.floor(now / WINDOW_MS);
    const into = now % WINDOW_MS;
    const checked: Array<{ state: LevelState; rpm: number | null; level: LevelAdmission }> = [];
    for (let i = 0; i < limits.subjects.length; i++) {
      const subject = limits.subjects[i]!;
      const state = this.stateOf(subject.ledger, knownSpend[i] ?? 0);
      for (const [id, held] of state.inFlight) {
        if (held.expiresAt <= now) this.release(state, id);
      }
      const spend = state.baseSpend + state.localSpend;
      if (subject.maxBudget !== null) {
        if (budgetSpent(spend, subject.maxBudget)) return { kind: "budget", spend, subject: i };
        const allowance = (subject.maxBudget - state.baseSpend) / replicas;
        if (state.localSpend + state.reserved >= allowance) return { kind: "budget_reserved", spend, subject: i };
      }
      if (subject.maxParallelRequests !== null && state.inFlight.size >= share(subject.maxParallelRequests)) {
        return { kind: "parallel", inFlight: state.inFlight.size, subject: i };
      }
      let requests = null;
      const rpm = subject.rpmLimit === null ? null : share(subject.rpmLimit);
      if (rpm !== null && rpm <= RPM_EXACT_MAX) {
        const times = state.requestTimes;
        while (times.length > 0 && times[0]! <= now - WINDOW_MS) times.shift();
        const resetMs = times.length > 0 ? times[0]! + WINDOW_MS - now : WINDOW_MS;
        if (times.length >= rpm) return { kind: "rpm", retryAfterMs: resetMs, subject: i };
        requests = { remaining: rpm - times.length - 1, resetMs };
      } else if (rpm !== null) {
        roll(state.requestBucket, bucket);
        const count = used(state.requestBucket, into);
        if (count >= rpm) return { kind: "rpm", retryAfterMs: WINDOW_MS - into, subject: i };
        requests = { remaining: Math.max(0, Math.floor(rpm - count - 1)), resetMs: WINDOW_MS - into };
      }
      let tokens = null;
      roll(state.tokenBucket, bucket);
      if (subject.tpmLimit !== null) {
        const limit = share(subject.tpmLimit);
        const count = used(state.tokenBucket, into);
        if (count >= limit) return { kind: "tpm", retryAfterMs: WINDOW_MS - into, subject: i };
        tokens = { remaining: Math.max(0, Math.floor(limit - count - r.tokens)), resetMs: WINDOW_MS - into };
      }
      checked.push({ state, rpm, level: { generation: "", spend, requests, tokens, budgetLeft: null, parallelLeft: null } });
    }
    for (const { state, rpm } of checked) {
      state.inFlight.set(r.requestId, { cost: r.cost, expiresAt: now + this.reservationTtlMs });
      state.reserved += r.cost;
      if (rpm !== null && rpm <= RPM_EXACT_MAX) state.requestTimes.push(now);
      else if (rpm !== null) state.requestBucket.current++;
      state.tokenBucket.current += r.tokens;
    }
    return { kind: "ok", levels: checked.map((c) => c.level) };
  }

  settle(limits: RequestLimits, s: Settlement, reservedTokens: number): void {
    for (const subject of limits.subjects) {
      const state = this.states.get(subject.ledger);
      if (!state) continue;
      this.release(state, s.requestId);
      state.localSpend += s.cost;
      state.tokenBucket.current = Math.max(0, state.tokenBucket.current + s.tokens - reservedTokens);
    }
  }

  /** A level's spend was reset: its budget share starts again from the durable spend. */
  forgetLedger(ledger: string): void {
    this.states.delete(ledger);
  }

  /** Redis is back: the cluster-wide ledger takes over, and local state starts afresh next time. */
  forget(): void {
    this.states.clear();
  }

  private stateOf(ledger: string, knownSpend: number): LevelState {
    let state = this.states.get(ledger);
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
      this.states.set(ledger, state);
    }
    return state;
  }

  private release(state: LevelState, id: string): void {
    const held = state.inFlight.get(id);
    if (!held) return;
    state.inFlight.delete(id);
    state.reserved = Math.max(0, state.reserved - held.cost);
  }
}
