import { LRUCache } from "lru-cache";
import { RateLimitError } from "../errors/errors.js";
import type { DependencyBreaker } from "../faults/breaker.js";
import type { Logger } from "../logger.js";
import type { GatehouseRedis } from "../redis/client.js";
import type { RedisKeys } from "../redis/key-names.js";

export interface LoginThrottleOptions {
  /** Null without Redis (the embedded single replica): this replica's own count is the whole cluster's. */
  redis: GatehouseRedis | null;
  keys: RedisKeys;
  breaker: DependencyBreaker;
  logger: Logger;
  /** Attempts that were not right allowed per client and window (admin_ui.login_max_failures). */
  maxFailures: number;
  /** The window, from a client's first counted attempt (admin_ui.login_failure_window_ms). */
  windowMs: number;
}

/** One counted attempt: given back with forgive() unless it turns out a wrong guess. */
export interface LoginAttempt {
  forgive(): Promise<void>;
}

// Clients counted by a replica on its own (no Redis, or Redis out of reach): enough for a scan from many addresses;
// past it the least recent are forgotten, which only ever lets one of them start its window again.
const LOCAL_CLIENTS = 100_000;

/**
 * Wrong guesses at the master key on the admin UI's login (docs/admin-ui.md, "Login attempts"), counted per client
 * address for the whole cluster in Redis: past `maxFailures` in a window, every login from that address gets 429
 * until the window ends, the right key included — otherwise the answer to a right guess (200 among 429s) would give
 * it away, and the limit would not bound guessing at all.
 *
 * Each attempt is counted before the key is checked (ui-login-attempt.lua) and given back if it was not a wrong
 * guess, so requests sent at once cannot all pass under the limit together. While Redis is out of reach each
 * replica counts on its own with the same limit: N replicas then allow up to N times as many guesses, until Redis
 * answers again.
 */
export class LoginThrottle {
  private readonly local = new LRUCache<string, { count: number; endsAt: number }>({ max: LOCAL_CLIENTS });
  readonly counters = { refused: 0, localFallback: 0 };

  constructor(private readonly o: LoginThrottleOptions) {}

  /** Counts an attempt by `client` (http/client-address.ts), or refuses it: RateLimitError (429, Retry-After). */
  async attempt(client: string): Promise<LoginAttempt> {
    const shared = await this.sharedAttempt(client);
    const outcome = shared ?? this.localAttempt(client);
    if (!outcome.counted) {
      this.counters.refused++;
      const seconds = Math.max(1, Math.ceil(outcome.leftMs / 1000));
      throw new RateLimitError(`Too many failed logins from ${client}: ${this.o.maxFailures} in ${Math.round(this.o.windowMs / 1000)} s. Try again in ${seconds} s.`, {
        code: "too_many_login_attempts",
        retryAfterSeconds: seconds,
      });
    }
    // Once per window and client: the attempt that reaches the limit.
    if (outcome.count === this.o.maxFailures) this.o.logger.warn({ client, window_ms: this.o.windowMs }, "admin UI logins from this client reached the limit of failed attempts");
    return { forgive: () => (shared ? this.sharedForgive(client) : this.localForgive(client)) };
  }

  /** The cluster's count; null when Redis cannot be asked (none, breaker open, no answer): count here instead. */
  private async sharedAttempt(client: string): Promise<Outcome | null> {
    const redis = this.o.redis;
    if (redis?.status !== "ready" || this.o.breaker.isOpen) return this.fallback(redis);
    try {
      const [counted, count, leftMs] = await this.o.breaker.run(() => redis.uiLoginAttempt(this.o.keys.uiLoginAttempts(client), this.o.maxFailures, this.o.windowMs));
      return { counted: counted === 1, count, leftMs };
    } catch (err) {
      this.o.logger.warn({ err: (err as Error).message }, "could not count a UI login attempt in Redis; this replica counts it on its own");
      return this.fallback(redis);
    }
  }

  private fallback(redis: GatehouseRedis | null): null {
    if (redis) this.counters.localFallback++;
    return null;
  }

  private async sharedForgive(client: string): Promise<void> {
    const redis = this.o.redis!;
    // Not given back (Redis went away meanwhile): the count is one too high until its window ends.
    await this.o.breaker.run(() => redis.uiLoginForgive(this.o.keys.uiLoginAttempts(client))).catch(() => {});
  }

  private localAttempt(client: string, now = Date.now()): Outcome {
    let entry = this.local.get(client);
    if (!entry || entry.endsAt <= now) {
      entry = { count: 0, endsAt: now + this.o.windowMs };
      this.local.set(client, entry);
    }
    if (entry.count >= this.o.maxFailures) return { counted: false, count: entry.count, leftMs: entry.endsAt - now };
    entry.count++;
    return { counted: true, count: entry.count, leftMs: entry.endsAt - now };
  }

  private async localForgive(client: string): Promise<void> {
    const entry = this.local.get(client);
    if (entry && entry.count > 0) entry.count--;
  }
}

interface Outcome {
  counted: boolean;
  count: number;
  leftMs: number;
}
