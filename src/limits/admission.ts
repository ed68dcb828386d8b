/**
 * The vocabulary shared by the two limiters (Redis, cluster-wide; local, the fallback) and the enforcer.
 */

/** One key's limits, from its auth record. Null means "no limit". */
export interface KeyLimits {
  keyId: string;
  maxBudget: number | null;
  rpmLimit: number | null;
  tpmLimit: number | null;
  maxParallelRequests: number | null;
}

/** What one request may use at most, reserved before it is forwarded. */
export interface Reservation {
  requestId: string;
  cost: number;
  tokens: number;
}

export interface WindowState {
  remaining: number;
  resetMs: number;
}

export type Admission =
  | {
      kind: "ok";
      /** The spend generation of the live ledger at admission ("" when the key has none). */
      generation: string;
      /** Spend of the current period as the limiter saw it, when it keeps one for this key. */
      spend: number | null;
      requests: WindowState | null;
      tokens: WindowState | null;
      /** What is left of the budget after this admission's reservation (null: no budget, or not known). */
      budgetLeft?: number | null;
      /** Parallel slots left after this admission (null: no limit, or not known). */
      parallelLeft?: number | null;
    }
  | { kind: "budget"; spend: number }
  | { kind: "budget_reserved"; spend: number }
  | { kind: "parallel"; inFlight: number }
  | { kind: "rpm"; retryAfterMs: number }
  | { kind: "tpm"; retryAfterMs: number };

export type Refusal = Exclude<Admission, { kind: "ok" }>;

export interface Settlement {
  requestId: string;
  keyId: string;
  generation: string;
  cost: number;
  tokens: number;
}

export function hasLimits(limits: KeyLimits): boolean {
  return limits.maxBudget !== null || limits.rpmLimit !== null || limits.tpmLimit !== null || limits.maxParallelRequests !== null;
}
