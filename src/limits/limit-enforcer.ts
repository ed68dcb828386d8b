import { randomUUID } from "node:crypto";
import { LRUCache } from "lru-cache";
import type { LimitSettings } from "../config/settings.js";
import { DependencyUnavailableError } from "../errors/errors.js";
import { countsAgainstHealth } from "../faults/classify.js";
import { BudgetExceededError, DeploymentAtCapacityError, RateLimitError, ServiceUnavailableError } from "../errors/errors.js";
import type { Logger } from "../logger.js";
import type { Database } from "../store/database.js";
import { readDurableSpend } from "../store/spend-store.js";
import { budgetOwner, describeOwner, levelNoun, type Admission, type LevelAdmission, type LimitSubject, type Refusal, type RequestLimits, type WindowState } from "./admission.js";
import { AdmissionPrefetcher } from "./admission-prefetcher.js";
import type { LocalLimiter } from "./local-limiter.js";
import type { Charge } from "./pricing.js";
import type { RedisLimiter } from "./redis-limiter.js";
import type { SpendLedger } from "./spend-ledger.js";

/** One admitted request's hold on the limits of its levels, from admit() until settle() gives it back. */
export interface Lease {
  limits: RequestLimits;
  requestId: string;
  reserved: Charge;
  admittedBy: "redis" | "local" | "none";
  /** Per subject (limits.subjects), the spend generation of its live ledger at admission ("" when unknown). */
  generations: string[];
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
 * A request is admitted against every level it belongs to that sets a limit — its key, team member, user and
 * team (request-limits.ts) — by the Redis limiter, cluster-wide: one Lua call checks and reserves on all of
 * them, one settles all of them. A key far from its limits finds its admission prefetched
 * (admission-prefetcher.ts): the admit call was made in the background after its previous request, off this
 * request's path. While Redis cannot be reached, the configured policy applies: `fail_open_local` (the local
 * limiter, each limit divided among the replicas) or `fail_closed` (503). A request none of whose levels sets
 * a limit never touches Redis. Every charge is also queued for the durable ledger in Postgres, per level,
 * whatever admitted it.
 */
const NO_HEADERS: Record<string, string> = Object.freeze({}) as Record<string, string>;
const NO_GENERATIONS: string[] = Object.freeze([]) as unknown as string[];

export class LimitEnforcer {
  /** The last live spend seen per level (by ledger name): where the local fallback's budget share starts from. */
  private readonly lastKnownSpend = new LRUCache<string, number>({ max: 100_000 });
  private degraded = false;
  readonly counters = { admittedRedis: 0, admittedLocal: 0, refused: 0, settleFailures: 0 };
  /**
   * Refusals by reason (budget, budget_reserved, parallel, rpm, tpm, unavailable) and the level that refused
   * (key, team_member, user, team; "" for unavailable), keyed "<reason> <level>", for metrics.
   */
  readonly rejections: Record<string, number> = {};

  /** Admissions held ready for keys far from their limits; null without Redis. */
  readonly prefetch: AdmissionPrefetcher | null;

  constructor(private readonly o: LimitEnforcerOptions) {
    const redis = o.redis;
    this.prefetch = redis
      ? new AdmissionPrefetcher({
          source: { admit: (limits, r, holdMs) => redis.admit(limits, r, holdMs), cancel: (limits, requestId) => redis.cancel(limits, requestId) },
          depth: o.settings.prefetch,
          maxAgeMs: o.settings.prefetchMaxAgeMs,
          // A failed prefetch costs nothing but the round trip it would have saved; the request path
          // meets the same failure itself and reports it there.
          onError: () => {},
        })
      : null;
  }

  /**
   * The lease of a request no level limits (no subjects): only its spend is recorded; no reservation, so no request
   * id and nothing to wait on. What admit() gives such a request, without a promise (proxy/straight-attempt.ts).
   */
  unlimited(limits: RequestLimits, reserved: Charge): Lease {
    return { limits, requestId: "", reserved, admittedBy: "none", generations: NO_GENERATIONS, headers: NO_HEADERS };
  }

  async admit(limits: RequestLimits, reserved: Charge): Promise<Lease> {
    if (limits.subjects.length === 0) return this.unlimited(limits, reserved);
    const ready = this.prefetch?.take(limits, reserved);
    // A prefetched admission was reserved in Redis before this request came, under its request id:
    // this request's settle releases what was reserved for it.
    const lease: Lease = { limits, requestId: ready?.requestId ?? randomUUID(), reserved, admittedBy: ready ? "redis" : "none", generations: NO_GENERATIONS, headers: {} };
    if (ready) {
      this.prefetch!.replenish(limits, reserved, ready.admission);
      return this.admitted(lease, ready.admission);
    }
    const reservation = { requestId: lease.requestId, cost: reserved.cost, tokens: reserved.promptTokens + reserved.completionTokens };
    let admission: Admission;
    const redis = this.o.redis;
    if (!redis) {
      admission = this.o.local.admit(limits, reservation, 1, await this.knownSpend(limits));
      lease.admittedBy = "local";
      return this.admitted(lease, admission);
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
        this.rejections["unavailable "] = (this.rejections["unavailable "] ?? 0) + 1;
        throw new ServiceUnavailableError("budgets and rate limits cannot be checked while Redis is unreachable (policy fail_closed); retry shortly", {
          code: "limits_unavailable",
        });
      }
      if (!this.degraded) {
        this.degraded = true;
        this.o.logger.warn({ replicas: this.o.replicaCount() }, "Redis is unreachable: enforcing limits per replica (policy fail_open_local)");
      }
      admission = this.o.local.admit(limits, reservation, this.o.replicaCount(), await this.knownSpend(limits));
      lease.admittedBy = "local";
    }
    return this.admitted(lease, admission);
  }

  private admitted(lease: Lease, admission: Admission): Lease {
    const subjects = lease.limits.subjects;
    if (admission.kind !== "ok") {
      this.counters.refused++;
      const reason = `${admission.kind} ${subjects[admission.subject]!.level}`;
      this.rejections[reason] = (this.rejections[reason] ?? 0) + 1;
      const subject = subjects[admission.subject]!;
      // A deployment's own limit is the router's business: the request goes to another deployment.
      if (subject.level === "deployment") throw capacityError(admission, subject);
      throw refusalError(admission, subject);
    }
    if (lease.admittedBy === "redis") this.counters.admittedRedis++;
    else this.counters.admittedLocal++;
    lease.generations = admission.levels.map((l) => l.generation);
    if (lease.admittedBy === "redis") {
      for (let i = 0; i < subjects.length; i++) {
        const spend = admission.levels[i]!.spend;
        if (spend !== null) this.lastKnownSpend.set(subjects[i]!.ledger, spend);
      }
    }
    lease.headers = rateHeaders(subjects, admission.levels);
    return lease;
  }

  /**
   * Charges what the request cost (its reservation when upstream reported no usage) on every level, and releases it.
   * Resolves once the live ledger has it (or settling there failed: logged and counted); never rejects.
   */
  settle(lease: Lease, actual: Charge | undefined): Promise<void> {
    const charge = actual ?? lease.reserved;
    const { subjects, owners } = lease.limits;
    for (const owner of owners) {
      const i = subjects.length === 0 ? -1 : subjects.findIndex((s) => s.ledger === owner.ledger);
      this.o.ledger.charge(owner, i === -1 ? "" : (lease.generations[i] ?? ""), charge.cost);
    }
    if (lease.admittedBy === "none") return SETTLED;
    const settlement = { requestId: lease.requestId, generations: lease.generations, cost: charge.cost, tokens: charge.promptTokens + charge.completionTokens };
    if (lease.admittedBy === "local") {
      this.o.local.settle(lease.limits, settlement, lease.reserved.promptTokens + lease.reserved.completionTokens);
      return SETTLED;
    }
    if (!this.o.redis) return SETTLED;
    return this.o.redis.settle(lease.limits, settlement).then(
      (spends) => {
        spends.forEach((spend, i) => {
          if (spend !== null && subjects[i]) this.lastKnownSpend.set(subjects[i].ledger, spend);
        });
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

  /** The live spend of a level's current period (Redis), or null when only Postgres knows it. `ledger`: SpendOwner.ledger (a key's is its key_id). */
  async liveSpend(ledger: string): Promise<number | null> {
    try {
      return (await this.o.redis?.liveSpend(ledger)) ?? null;
    } catch {
      return null;
    }
  }

  /**
   * After a reset in Postgres (new generation): drop the live ledger so the next request seeds it from
   * Postgres. If Redis cannot be told now, the first flush that meets the new generation tells it.
   */
  async afterReset(ledger: string, generation?: string): Promise<void> {
    this.lastKnownSpend.delete(ledger);
    this.prefetch?.forgetLedger(ledger);
    this.o.local.forgetLedger(ledger);
    try {
      await this.o.redis?.dropLedger(ledger, generation);
    } catch (err) {
      this.o.logger.warn({ err: (err as Error).message, ledger }, "could not drop a reset level's live ledger; a later spend flush will");
    }
  }

  /**
   * The database answering is another history (coherence's epoch): the Redis ledgers moved to its namespace and
   * are seeded from it, so nothing learned from the old one's spend is used again.
   */
  afterLineageChange(): void {
    this.lastKnownSpend.clear();
    this.prefetch?.forgetAll();
    this.o.local.forget();
  }

  /** Per subject, where the local fallback's budget share starts: the last live spend seen, else Postgres's. */
  private knownSpend(limits: RequestLimits): Promise<number[]> {
    return Promise.all(
      limits.subjects.map(async (s) => {
        if (s.maxBudget === null) return 0;
        const known = this.lastKnownSpend.get(s.ledger);
        if (known !== undefined) return known;
        return (await this.o.db.query((q) => readDurableSpend(q, budgetOwner(s)))).spend;
      }),
    );
  }
}

function isRedisOutage(err: unknown): boolean {
  return err instanceof DependencyUnavailableError || countsAgainstHealth(err);
}

function capacityError(refusal: Refusal, subject: LimitSubject): DeploymentAtCapacityError {
  switch (refusal.kind) {
    case "rpm":
    case "tpm":
      return new DeploymentAtCapacityError(subject.id, refusal.kind, refusal.retryAfterMs);
    default:
      // Calls in flight end on their own time: come back in a second.
      return new DeploymentAtCapacityError(subject.id, "parallel", 1_000);
  }
}

function refusalError(refusal: Refusal, subject: LimitSubject): Error {
  const who = describeOwner(subject);
  const noun = levelNoun(subject.level);
  switch (refusal.kind) {
    case "budget":
      return new BudgetExceededError(refusal.spend, subject.maxBudget!, who);
    case "budget_reserved":
      return new RateLimitError(`The rest of this ${noun}'s budget is reserved by requests in flight; retry when they finish. ${who}`, {
        code: "budget_reserved",
        retryAfterSeconds: 1,
      });
    case "parallel":
      return new RateLimitError(`This ${noun} has ${refusal.inFlight} requests in flight, its max_parallel_requests is ${subject.maxParallelRequests}. ${who}`, {
        code: "parallel_request_limit_exceeded",
        retryAfterSeconds: 1,
      });
    case "rpm":
      return new RateLimitError(`Rate limit reached: this ${noun} allows ${subject.rpmLimit} requests per minute. ${who}`, {
        code: "rate_limit_exceeded",
        retryAfterSeconds: Math.max(1, Math.ceil(refusal.retryAfterMs / 1000)),
        headers: rateHeaders([subject], [{ ...REFUSED_LEVEL, requests: { remaining: 0, resetMs: refusal.retryAfterMs } }]),
      });
    case "tpm":
      return new RateLimitError(`Rate limit reached: this ${noun} allows ${subject.tpmLimit} tokens per minute. ${who}`, {
        code: "tokens_rate_limit_exceeded",
        retryAfterSeconds: Math.max(1, Math.ceil(refusal.retryAfterMs / 1000)),
        headers: rateHeaders([subject], [{ ...REFUSED_LEVEL, tokens: { remaining: 0, resetMs: refusal.retryAfterMs } }]),
      });
  }
}

const SETTLED: Promise<void> = Promise.resolve();

const REFUSED_LEVEL: LevelAdmission = { generation: "", spend: null, requests: null, tokens: null, budgetLeft: null, parallelLeft: null };

/**
 * OpenAI's x-ratelimit-* headers. With several levels limiting requests (or tokens), they describe the one
 * with the least left: the one that will refuse first.
 */
function rateHeaders(subjects: LimitSubject[], levels: LevelAdmission[]): Record<string, string> {
  const h: Record<string, string> = {};
  let requests: { limit: number; state: WindowState } | null = null;
  let tokens: { limit: number; state: WindowState } | null = null;
  for (let i = 0; i < subjects.length; i++) {
    const s = subjects[i]!;
    const l = levels[i];
    // A deployment's limits are the cluster's own capacity, not the caller's allowance.
    if (!l || s.level === "deployment") continue;
    if (l.requests && s.rpmLimit !== null && (!requests || l.requests.remaining < requests.state.remaining)) requests = { limit: s.rpmLimit, state: l.requests };
    if (l.tokens && s.tpmLimit !== null && (!tokens || l.tokens.remaining < tokens.state.remaining)) tokens = { limit: s.tpmLimit, state: l.tokens };
  }
  if (requests) {
    h["x-ratelimit-limit-requests"] = String(requests.limit);
    h["x-ratelimit-remaining-requests"] = String(Math.max(0, requests.state.remaining));
    h["x-ratelimit-reset-requests"] = formatReset(requests.state.resetMs);
  }
  if (tokens) {
    h["x-ratelimit-limit-tokens"] = String(tokens.limit);
    h["x-ratelimit-remaining-tokens"] = String(Math.max(0, tokens.state.remaining));
    h["x-ratelimit-reset-tokens"] = formatReset(tokens.state.resetMs);
  }
  return h;
}

/** OpenAI's duration style: "250ms", "1.5s", "1m0s". */
function formatReset(ms: number): string {
  if (ms < 1_000) return `${Math.ceil(ms)}ms`;
  if (ms < 60_000) return `${Number((ms / 1000).toFixed(1))}s`;
  return `${Math.floor(ms / 60_000)}m${Math.round((ms % 60_000) / 1000)}s`;
}
