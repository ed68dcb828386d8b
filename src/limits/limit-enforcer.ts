import { randomUUID } from "node:crypto";
import { LRUCache } from "lru-cache";
import type { LimitSettings } from "../config/settings.js";
import { DependencyUnavailableError } from "../errors/errors.js";
import { countsAgainstHealth } from "../faults/classify.js";
import { BudgetExceededError, RateLimitError, ServiceUnavailableError } from "../errors/errors.js";
import type { Logger } from "../logger.js";
import type { Database } from "../store/database.js";
import { readDurableSpend } from "../store/spend-store.js";
import { hasLimits, type Admission, type KeyLimits, type Refusal, type WindowState } from "./admission.js";
import { AdmissionPrefetcher } from "./admission-prefetcher.js";
import type { LocalLimiter } from "./local-limiter.js";
import type { Charge } from "./pricing.js";
import type { RedisLimiter } from "./redis-limiter.js";
import type { SpendLedger } from "./spend-ledger.js";

/** One admitted request's hold on its key's limits, from admit() until settle() gives it back. */
export interface Lease {
  limits: KeyLimits;
  requestId: string;
  reserved: Charge;
  admittedBy: "redis" | "local" | "none";
  generation: string;
  /** x-ratelimit-* headers for the response. */
  headers: Record<string, string>;
}

export interface LimitEnforcerOptions {
  settings: LimitSettings;
  /** Null without Redis (the embedded single replica): the local limiter is then exact, not a fallback. */
  redis: RedisLimiter | null;
  local: LocalLimiter;
  ledger: SpendLedger;
  db: Database;
  logger: Logger;
  replicaCount: () => number;
}

/**
 * Budgets, spend and rate limits for the request path:
 * admit() before a request is forwarded, settle() once it is over, whatever way it ended.
 *
 * Keys with limits are admitted by the Redis limiter, cluster-wide: one Lua call to admit, one to
 * settle. A key far from its limits finds its admission prefetched (admission-prefetcher.ts): the admit
 * call was made in the background after its previous request, off this request's path. While Redis
 * cannot be reached, the configured policy applies: `fail_open_local` (the local limiter, each limit
 * divided among the replicas) or `fail_closed` (503). Keys without limits never
 * touch Redis. Every charge is also queued for the durable ledger in Postgres, whatever admitted it.
 */
const NO_HEADERS: Record<string, string> = Object.freeze({}) as Record<string, string>;

export class LimitEnforcer {
  /** The last live spend seen per key: where the local fallback's budget share starts from. */
  private readonly lastKnownSpend = new LRUCache<string, number>({ max: 100_000 });
  private degraded = false;
  readonly counters = { admittedRedis: 0, admittedLocal: 0, refused: 0, settleFailures: 0 };
  /** Refusals by reason (budget, budget_reserved, parallel, rpm, tpm, unavailable), for metrics. */
  readonly rejections: Record<string, number> = {};

  /** Admissions held ready for keys far from their limits; null without Redis. */
  readonly prefetch: AdmissionPrefetcher | null;

  constructor(private readonly o: LimitEnforcerOptions) {
    const redis = o.redis;
    this.prefetch = redis
      ? new AdmissionPrefetcher({
          source: { admit: (limits, r, holdMs) => redis.admit(limits, r, holdMs), cancel: (keyId, requestId) => redis.cancel(keyId, requestId) },
          depth: o.settings.prefetch,
          maxAgeMs: o.settings.prefetchMaxAgeMs,
          // A failed prefetch costs nothing but the round trip it would have saved; the request path
          // meets the same failure itself and reports it there.
          onError: () => {},
        })
      : null;
  }

  async admit(limits: KeyLimits, reserved: Charge): Promise<Lease> {
    // A key without limits only has its spend recorded: no reservation, so no request id and nothing to wait on.
    if (!hasLimits(limits)) return { limits, requestId: "", reserved, admittedBy: "none", generation: "", headers: NO_HEADERS };
    const ready = this.prefetch?.take(limits, reserved);
    // A prefetched admission was reserved in Redis before this request came, under its request id:
    // this request's settle releases what was reserved for it.
    const lease: Lease = { limits, requestId: ready?.requestId ?? randomUUID(), reserved, admittedBy: ready ? "redis" : "none", generation: "", headers: {} };
    if (ready) {
      this.prefetch!.replenish(limits, reserved, ready.admission);
      return this.admitted(lease, limits, ready.admission);
    }
    const reservation = { requestId: lease.requestId, cost: reserved.cost, tokens: reserved.promptTokens + reserved.completionTokens };
    let admission: Admission;
    const redis = this.o.redis;
    if (!redis) {
      admission = this.o.local.admit(limits, reservation, 1, await this.knownSpend(limits));
      lease.admittedBy = "local";
      return this.admitted(lease, limits, admission);
    }
    try {
      admission = await redis.admit(limits, reservation);
      lease.admittedBy = "redis";
      if (admission.kind === "ok") this.prefetch?.replenish(limits, reserved, admission);
      if (this.degraded) {
        this.degraded = false;
        this.o.local.forget();
        this.o.logger.info("Redis answers again: limits are cluster-wide again");
      }
    } catch (err) {
      if (!isRedisOutage(err)) throw err;
      if (this.o.settings.redisUnavailable === "fail_closed") {
        this.rejections.unavailable = (this.rejections.unavailable ?? 0) + 1;
        throw new ServiceUnavailableError("budgets and rate limits cannot be checked while Redis is unreachable (policy fail_closed); retry shortly", 1, "limits_unavailable");
      }
      if (!this.degraded) {
        this.degraded = true;
        this.o.logger.warn({ replicas: this.o.replicaCount() }, "Redis is unreachable: enforcing limits per replica (policy fail_open_local)");
      }
      admission = this.o.local.admit(limits, reservation, this.o.replicaCount(), await this.knownSpend(limits));
      lease.admittedBy = "local";
    }
    return this.admitted(lease, limits, admission);
  }

  private admitted(lease: Lease, limits: KeyLimits, admission: Admission): Lease {
    if (admission.kind !== "ok") {
      this.counters.refused++;
      this.rejections[admission.kind] = (this.rejections[admission.kind] ?? 0) + 1;
      throw refusalError(admission, limits);
    }
    if (lease.admittedBy === "redis") this.counters.admittedRedis++;
    else this.counters.admittedLocal++;
    lease.generation = admission.generation;
    if (admission.spend !== null && lease.admittedBy === "redis") this.lastKnownSpend.set(limits.keyId, admission.spend);
    lease.headers = rateHeaders(limits, admission.requests, admission.tokens);
    return lease;
  }

  /** Charges what the request cost (its reservation when upstream reported no usage) and releases it. */
  settle(lease: Lease, actual: Charge | undefined): void {
    const charge = actual ?? lease.reserved;
    this.o.ledger.charge(lease.limits.keyId, lease.generation, charge.cost);
    if (lease.admittedBy === "none") return;
    const settlement = {
      requestId: lease.requestId,
      keyId: lease.limits.keyId,
      generation: lease.generation,
      cost: charge.cost,
      tokens: charge.promptTokens + charge.completionTokens,
    };
    if (lease.admittedBy === "local") {
      this.o.local.settle(settlement, lease.reserved.promptTokens + lease.reserved.completionTokens);
      return;
    }
    this.o.redis?.settle(settlement).then(
      (spend) => {
        if (spend !== null) this.lastKnownSpend.set(lease.limits.keyId, spend);
      },
      (err: unknown) => {
        // The reservation expires on its own; the durable ledger has the charge; the live ledger is
        // short of it until it is next seeded (docs/limits.md, "bounds").
        this.counters.settleFailures++;
        this.o.logger.warn({ err: (err as Error).message, key_id: lease.limits.keyId }, "settling a request in Redis failed");
      },
    );
  }

  /** Gives back the admissions held ready (shutdown, after the requests drained). */
  async close(): Promise<void> {
    await this.prefetch?.close();
  }

  /** The live spend of a key's current period (Redis), or null when only Postgres knows it. */
  async liveSpend(keyId: string): Promise<number | null> {
    try {
      return (await this.o.redis?.liveSpend(keyId)) ?? null;
    } catch {
      return null;
    }
  }

  /**
   * After a reset in Postgres (new generation): drop the live ledger so the next request seeds it from
   * Postgres. If Redis cannot be told now, the first flush that meets the new generation tells it.
   */
  async afterReset(keyId: string, generation?: string): Promise<void> {
    this.lastKnownSpend.delete(keyId);
    this.prefetch?.forgetKey(keyId);
    this.o.local.forgetKey(keyId);
    try {
      await this.o.redis?.dropLedger(keyId, generation);
    } catch (err) {
      this.o.logger.warn({ err: (err as Error).message, key_id: keyId }, "could not drop a reset key's live ledger; a later spend flush will");
    }
  }

  private async knownSpend(limits: KeyLimits): Promise<number> {
    if (limits.maxBudget === null) return 0;
    const known = this.lastKnownSpend.get(limits.keyId);
    if (known !== undefined) return known;
    const durable = await this.o.db.query((q) => readDurableSpend(q, limits.keyId));
    return durable?.spend ?? 0;
  }
}

function isRedisOutage(err: unknown): boolean {
  return err instanceof DependencyUnavailableError || countsAgainstHealth(err);
}

function refusalError(refusal: Refusal, limits: KeyLimits): Error {
  switch (refusal.kind) {
    case "budget":
      return new BudgetExceededError(refusal.spend, limits.maxBudget!);
    case "budget_reserved":
      return new RateLimitError("The rest of this key's budget is reserved by requests in flight; retry when they finish.", 1, "budget_reserved");
    case "parallel":
      return new RateLimitError(
        `This key has ${refusal.inFlight} requests in flight, its max_parallel_requests is ${limits.maxParallelRequests}.`,
        1,
        "parallel_request_limit_exceeded",
      );
    case "rpm":
      return new RateLimitError(
        `Rate limit reached: this key allows ${limits.rpmLimit} requests per minute.`,
        Math.max(1, Math.ceil(refusal.retryAfterMs / 1000)),
        "rate_limit_exceeded",
        rateHeaders(limits, { remaining: 0, resetMs: refusal.retryAfterMs }, null),
      );
    case "tpm":
      return new RateLimitError(
        `Rate limit reached: this key allows ${limits.tpmLimit} tokens per minute.`,
        Math.max(1, Math.ceil(refusal.retryAfterMs / 1000)),
        "tokens_rate_limit_exceeded",
        rateHeaders(limits, null, { remaining: 0, resetMs: refusal.retryAfterMs }),
      );
  }
}

/** OpenAI's x-ratelimit-* headers. */
function rateHeaders(limits: KeyLimits, requests: WindowState | null, tokens: WindowState | null): Record<string, string> {
  const h: Record<string, string> = {};
  if (requests && limits.rpmLimit !== null) {
    h["x-ratelimit-limit-requests"] = String(limits.rpmLimit);
    h["x-ratelimit-remaining-requests"] = String(Math.max(0, requests.remaining));
    h["x-ratelimit-reset-requests"] = formatReset(requests.resetMs);
  }
  if (tokens && limits.tpmLimit !== null) {
    h["x-ratelimit-limit-tokens"] = String(limits.tpmLimit);
    h["x-ratelimit-remaining-tokens"] = String(Math.max(0, tokens.remaining));
    h["x-ratelimit-reset-tokens"] = formatReset(tokens.resetMs);
  }
  return h;
}

/** OpenAI's duration style: "250ms", "1.5s", "1m0s". */
function formatReset(ms: number): string {
  if (ms < 1_000) return `${Math.ceil(ms)}ms`;
  if (ms < 60_000) return `${Number((ms / 1000).toFixed(1))}s`;
  return `${Math.floor(ms / 60_000)}m${Math.round((ms % 60_000) / 1000)}s`;
}
