import type { DependencyBreaker } from "../faults/breaker.js";
import type { GatehouseRedis } from "../redis/client.js";
import type { RedisKeys } from "../redis/key-names.js";
import type { Admission, KeyLimits, Reservation, Settlement } from "./admission.js";

// The live ledger of a key unused this long is dropped; the next request seeds it again from Postgres.
const LEDGER_TTL_MS = 24 * 3_600_000;

export interface SeedSource {
  /** The durable spend of the current period and its generation; null when the key is gone. */
  read(keyId: string): Promise<{ spend: number; generation: string } | null>;
}

/**
 * The cluster-wide limiter: one Lua call admits (checks every limit and reserves), one settles
 * (redis/lua/limits-*.lua). A key's ledger is seeded from Postgres the first time it is needed (after a
 * Redis restart, an eviction, or a reset), with HSET-if-absent inside the script: every replica may
 * try, the first one wins, nobody adds (re-seeding never inflates spend).
 */
export class RedisLimiter {
  readonly counters = { seeds: 0 };

  constructor(
    private readonly redis: GatehouseRedis,
    private readonly keys: RedisKeys,
    private readonly seeds: SeedSource,
    private readonly reservationTtlMs: number,
    private readonly breaker: DependencyBreaker,
  ) {}

  /** Every Redis call goes through the Redis breaker; the Postgres seed read does not. */
  private call<T>(op: () => Promise<T>): Promise<T> {
    return this.breaker.run(op);
  }

  /**
   * `holdMs` > 0 admits ahead of the request (a prefetched admission, which may wait up to that long for
   * one): the rpm log counts it from then on, so whenever it is used it counts for a whole minute.
   */
  async admit(limits: KeyLimits, r: Reservation, holdMs = 0): Promise<Admission> {
    const first = await this.reserve(limits, r, null, holdMs);
    if (first[0] !== "seed") return toAdmission(first);
    this.counters.seeds++;
    const seed = (await this.seeds.read(limits.keyId)) ?? { spend: 0, generation: "0" };
    return toAdmission(await this.reserve(limits, r, seed, holdMs));
  }

  async settle(s: Settlement): Promise<number | null> {
    const k = this.keys.limits(s.keyId);
    const spend = await this.call(() => this.redis.limitsSettle(k.ledger, k.inflight, k.reserved, k.requests, k.tokens, s.requestId, s.cost, s.tokens, s.generation, ""));
    return spend === "" ? null : Number(spend);
  }

  /** Gives back an admission no request used: its reservation, its parallel slot and its place in the rate windows. */
  async cancel(keyId: string, requestId: string): Promise<void> {
    const k = this.keys.limits(keyId);
    await this.call(() => this.redis.limitsSettle(k.ledger, k.inflight, k.reserved, k.requests, k.tokens, requestId, 0, 0, "", "1"));
  }

  /** Live spend of the current period, or null when Redis holds no ledger for the key. */
  async liveSpend(keyId: string): Promise<number | null> {
    const spend = await this.call(() => this.redis.hget(this.keys.limits(keyId).ledger, "spend"));
    return spend === null ? null : Number(spend);
  }

  /** Drops a ledger older than `generation` (a reset happened), so the next request seeds it afresh. */
  async dropLedger(keyId: string, generation?: string): Promise<void> {
    const ledger = this.keys.limits(keyId).ledger;
    if (generation === undefined) {
      await this.call(() => this.redis.del(ledger));
      return;
    }
    await this.call(() => this.redis.limitsDropStale(ledger, generation));
  }

  private reserve(limits: KeyLimits, r: Reservation, seed: { spend: number; generation: string } | null, holdMs: number): Promise<string[]> {
    const k = this.keys.limits(limits.keyId);
    return this.call(() =>
      this.redis.limitsReserve(
        k.ledger,
        k.inflight,
        k.reserved,
        k.requests,
        k.tokens,
        r.requestId,
        r.cost,
        r.tokens,
        opt(limits.maxBudget),
        opt(limits.rpmLimit),
        opt(limits.tpmLimit),
        opt(limits.maxParallelRequests),
        this.reservationTtlMs,
        LEDGER_TTL_MS,
        seed ? seed.spend : "",
        seed ? seed.generation : "",
        holdMs,
      ),
    );
  }
}

function opt(v: number | null): string | number {
  return v === null ? "" : v;
}

function toAdmission(reply: string[]): Admission {
  switch (reply[0]) {
    case "ok": {
      const [, generation, spend, rpmRemaining, rpmReset, tpmRemaining, tpmReset, , budgetLeft, parallelLeft] = reply;
      return {
        kind: "ok",
        generation: generation ?? "",
        spend: spend ? Number(spend) : null,
        requests: rpmRemaining ? { remaining: Number(rpmRemaining), resetMs: Number(rpmReset) } : null,
        tokens: tpmRemaining ? { remaining: Number(tpmRemaining), resetMs: Number(tpmReset) } : null,
        budgetLeft: budgetLeft ? Number(budgetLeft) : null,
        parallelLeft: parallelLeft ? Number(parallelLeft) : null,
      };
    }
    case "budget":
      return { kind: "budget", spend: Number(reply[1]) };
    case "budget_reserved":
      return { kind: "budget_reserved", spend: Number(reply[1]) };
    case "parallel":
      return { kind: "parallel", inFlight: Number(reply[1]) };
    case "rpm":
      return { kind: "rpm", retryAfterMs: Number(reply[1]) };
    case "tpm":
      return { kind: "tpm", retryAfterMs: Number(reply[1]) };
    default:
      throw new Error(`unexpected reply from limits-reserve: ${String(reply[0])}`);
  }
}
