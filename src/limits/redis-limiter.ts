import { ServiceUnavailableError } from "../errors/errors.js";
import type { DependencyBreaker } from "../faults/breaker.js";
import type { GatehouseRedis } from "../redis/client.js";
import type { RedisKeys } from "../redis/key-names.js";
import type { RedisServerIdentity } from "../redis/server-identity.js";
import { reinstated } from "../testing/reinstated-bugs.js";
import { type Admission, budgetOwner, type LevelAdmission, type RequestLimits, type Reservation, type Settlement, type SpendOwner } from "./admission.js";

// The live ledger of a key unused this long is dropped; the next request seeds it again from Postgres.
const LEDGER_TTL_MS = 24 * 3_600_000;

export interface SeedSource {
  /**
   * A level's spend in its current period as this replica knows it without Redis — durable spend in Postgres
   * plus what this replica charged and has not flushed yet — and its generation (spend 0 when Postgres has no row).
   */
  read(owner: SpendOwner): Promise<{ spend: number; generation: string }>;
}

/**
 * The cluster-wide limiter: one Lua call admits a request on every level it belongs to (checks every limit
 * of every level, then reserves on all), one settles all of them (redis/lua/limits-*.lua). A level's ledger
 * is seeded from Postgres the first time it is needed (after a Redis restart, an eviction, or a reset), and
 * again when it came from another Redis server's history (a failover to a replica that lagged, a snapshot
 * restored: redis/server-identity.ts): the first replica to seed stamps it with the server, later ones use it,
 * and a seed never lowers a ledger of the same generation (re-seeding never inflates spend, nor rewinds it).
 */
export class RedisLimiter {
  readonly counters = { seeds: 0 };

  constructor(
    private readonly redis: GatehouseRedis,
    private readonly keys: RedisKeys,
    private readonly seeds: SeedSource,
    private readonly reservationTtlMs: number,
    private readonly breaker: DependencyBreaker,
    private readonly server: RedisServerIdentity,
  ) {}

  /** Every Redis call goes through the Redis breaker; the Postgres seed read does not. */
  private call<T>(op: () => Promise<T>): Promise<T> {
    return this.breaker.run(op);
  }

  /**
   * `holdMs` > 0 admits ahead of the request (a prefetched admission, which may wait up to that long for
   * one): the rpm log counts it from then on, so whenever it is used it counts for a whole minute.
   */
  async admit(limits: RequestLimits, r: Reservation, holdMs = 0): Promise<Admission> {
    let reply = await this.reserve(limits, r, null, holdMs);
    // A level's ledger may be dropped (a reset) between two calls, so seeding may be asked for again: a few times.
    for (let attempt = 0; reply[0] === "seed" && attempt < 3; attempt++) {
      this.counters.seeds++;
      const unseeded = reply.slice(1).map((n) => Number(n) - 1);
      const seeds = new Map(await Promise.all(unseeded.map(async (i) => [i, await this.seeds.read(budgetOwner(limits.subjects[i]!))] as const)));
      reply = await this.reserve(limits, r, seeds, holdMs);
    }
    if (reply[0] === "seed") throw new ServiceUnavailableError("the spend ledger kept being reset while this request was admitted; retry shortly", { code: "limits_busy" });
    return toAdmission(reply, limits.subjects.length);
  }

  /** Settles on every level; returns each level's live spend after the charge (null: no live ledger). */
  async settle(limits: RequestLimits, s: Settlement): Promise<Array<number | null>> {
    const keys = this.levelKeys(limits);
    const reply = await this.call(() => this.redis.limitsSettle(keys.length, ...keys, s.requestId, s.cost, s.tokens, "", ...s.generations));
    return reply.map((spend) => (spend === "" ? null : Number(spend)));
  }

  /** Gives back an admission no request used: its reservations, parallel slots and places in the rate windows. */
  async cancel(limits: RequestLimits, requestId: string): Promise<void> {
    const keys = this.levelKeys(limits);
    await this.call(() => this.redis.limitsSettle(keys.length, ...keys, requestId, 0, 0, "1", ...limits.subjects.map(() => "")));
  }

  /** Live spend of a level's current period, or null when Redis holds no ledger for it. */
  async liveSpend(ledger: string): Promise<number | null> {
    const spend = await this.call(() => this.redis.hget(this.keys.limits(ledger).ledger, "spend"));
    return spend === null ? null : Number(spend);
  }

  /** Drops a ledger older than `generation` (a reset happened), so the next request seeds it afresh. */
  async dropLedger(ledgerName: string, generation?: string): Promise<void> {
    const ledger = this.keys.limits(ledgerName).ledger;
    if (generation === undefined) {
      await this.call(() => this.redis.del(ledger));
      return;
    }
    await this.call(() => this.redis.limitsDropStale(ledger, generation));
  }

  private levelKeys(limits: RequestLimits): string[] {
    const keys: string[] = [];
    for (const subject of limits.subjects) {
      const k = this.keys.limits(subject.ledger);
      keys.push(k.ledger, k.inflight, k.reserved, k.requests, k.tokens);
    }
    return keys;
  }

  private async reserve(limits: RequestLimits, r: Reservation, seeds: Map<number, { spend: number; generation: string }> | null, holdMs: number): Promise<string[]> {
    const keys = this.levelKeys(limits);
    // A test build that reinstates ledger-rewind stamps every ledger alike, so none is ever re-seeded.
    const runId = reinstated("ledger-rewind") ? "any-server" : (this.server.known ?? (await this.call(() => this.server.read())));
    const args: Array<string | number> = [r.requestId, r.cost, r.tokens, this.reservationTtlMs, LEDGER_TTL_MS, holdMs, runId];
    limits.subjects.forEach((s, i) => {
      const seed = seeds?.get(i);
      args.push(opt(s.maxBudget), opt(s.rpmLimit), opt(s.tpmLimit), opt(s.maxParallelRequests), seed ? seed.spend : "", seed ? seed.generation : "");
    });
    return this.call(() => this.redis.limitsReserve(keys.length, ...keys, ...args));
  }
}

function opt(v: number | null): string | number {
  return v === null ? "" : v;
}

const FIELDS_PER_LEVEL = 9;

function toAdmission(reply: string[], levels: number): Admission {
  const subject = Number(reply[2]) - 1;
  switch (reply[0]) {
    case "ok": {
      const out: LevelAdmission[] = [];
      for (let i = 0; i < levels; i++) {
        const at = 1 + i * FIELDS_PER_LEVEL;
        const [generation, spend, rpmRemaining, rpmReset, tpmRemaining, tpmReset, , budgetLeft, parallelLeft] = reply.slice(at, at + FIELDS_PER_LEVEL);
        out.push({
          generation: generation ?? "",
          spend: spend ? Number(spend) : null,
          requests: rpmRemaining ? { remaining: Number(rpmRemaining), resetMs: Number(rpmReset) } : null,
          tokens: tpmRemaining ? { remaining: Number(tpmRemaining), resetMs: Number(tpmReset) } : null,
          budgetLeft: budgetLeft ? Number(budgetLeft) : null,
          parallelLeft: parallelLeft ? Number(parallelLeft) : null,
        });
      }
      return { kind: "ok", levels: out };
    }
    case "budget":
      return { kind: "budget", spend: Number(reply[1]), subject };
    case "budget_reserved":
      return { kind: "budget_reserved", spend: Number(reply[1]), subject };
    case "parallel":
      return { kind: "parallel", inFlight: Number(reply[1]), subject };
    case "rpm":
      return { kind: "rpm", retryAfterMs: Number(reply[1]), subject };
    case "tpm":
      return { kind: "tpm", retryAfterMs: Number(reply[1]), subject };
    default:
      throw new Error(`unexpected reply from limits-reserve: ${String(reply[0])}`);
  }
}
