import CircuitBreaker from "opossum";
import type { Logger } from "../logger.js";
import { type Dependency, DependencyUnavailableError } from "../errors/errors.js";
import { countsAgainstHealth } from "./classify.js";

/**
 * A circuit breaker around one dependency (Postgres or Redis), on opossum. Only connection failures and
 * timeouts count toward opening it; a constraint violation says nothing about the server's health. While
 * open, calls fail at once with DependencyUnavailableError (503 with Retry-After) instead of waiting on a
 * dead server; after `resetTimeoutMs` one probe is let through (half-open) and success closes it again.
 */
export type BreakerState = "closed" | "open" | "half-open";

export interface BreakerOptions {
  /**
   * A call slower than this fails and counts (a hung server must not hang requests). `false` leaves
   * timeouts to the client library: Postgres transactions must not be abandoned by the breaker while the
   * work goes on and may still commit, so there pg's own query_timeout ends the call and its connection.
   */
  timeoutMs: number | false;
  resetTimeoutMs: number;
  /** Failure percentage within the rolling window that opens the breaker. */
  errorThresholdPercentage: number;
  /** Calls in the window before it may open at all. */
  volumeThreshold: number;
  rollingWindowMs: number;
}

export const POSTGRES_BREAKER_OPTIONS: BreakerOptions = {
  timeoutMs: false,
  resetTimeoutMs: 2_000,
  errorThresholdPercentage: 50,
  volumeThreshold: 5,
  rollingWindowMs: 10_000,
};

export const REDIS_BREAKER_OPTIONS: BreakerOptions = { ...POSTGRES_BREAKER_OPTIONS, timeoutMs: false };

export class DependencyBreaker {
  private readonly breaker: CircuitBreaker<[() => Promise<unknown>], unknown>;
  readonly counters = { opened: 0, rejected: 0 };

  constructor(
    readonly name: Dependency,
    logger: Logger,
    private readonly options: BreakerOptions,
  ) {
    this.breaker = new CircuitBreaker((op: () => Promise<unknown>) => op(), {
      timeout: options.timeoutMs,
      resetTimeout: options.resetTimeoutMs,
      errorThresholdPercentage: options.errorThresholdPercentage,
      volumeThreshold: options.volumeThreshold,
      rollingCountTimeout: options.rollingWindowMs,
      // true = "this error does not count": everything but connection failures and timeouts.
      errorFilter: (err: unknown) => !countsAgainstHealth(err),
    });
    this.breaker.on("open", () => {
      this.counters.opened++;
      logger.warn({ breaker: name }, "circuit breaker opened: failing fast");
    });
    this.breaker.on("halfOpen", () => logger.info({ breaker: name }, "circuit breaker half-open: probing"));
    this.breaker.on("close", () => logger.info({ breaker: name }, "circuit breaker closed: dependency is back"));
  }

  get state(): BreakerState {
    return this.breaker.opened ? "open" : this.breaker.halfOpen ? "half-open" : "closed";
  }

  get isOpen(): boolean {
    return this.breaker.opened;
  }

  /** Runs `op` through the breaker; rejects with DependencyUnavailableError while the breaker is open. */
  async run<T>(op: () => Promise<T>): Promise<T> {
    try {
      return (await this.breaker.fire(op)) as T;
    } catch (err) {
      if ((err as { code?: string }).code === "EOPENBREAKER") {
        this.counters.rejected++;
        throw new DependencyUnavailableError(this.name, Math.ceil(this.options.resetTimeoutMs / 1000));
      }
      throw err;
    }
  }

  /** Turns a failure that means "the dependency is not answering" into a 503; leaves others alone. */
  unavailable(err: unknown): unknown {
    if (err instanceof DependencyUnavailableError) return err;
    return countsAgainstHealth(err) ? new DependencyUnavailableError(this.name, Math.ceil(this.options.resetTimeoutMs / 1000), err) : err;
  }

  shutdown(): void {
    this.breaker.shutdown();
  }
}
