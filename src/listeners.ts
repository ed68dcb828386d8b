import type { Logger } from "./logger.js";

/** The side of a hook that later wiring sees: a way in, and a way back out. */
export interface Subscribable<A extends unknown[]> {
  /** Adds `listener` after those already there; returns what removes it (called again, it does nothing). */
  subscribe(listener: (...args: A) => unknown): () => void;
}

/**
 * One hook, any number of subscribers: where the wiring of a replica (gateway.ts) tells one part about another's
 * doings — a heartbeat, an applied event, a new database history, a budget reset. A single callback slot assigned
 * after construction would let a second assignment silently replace the first; here every subscriber is called.
 *
 * emit() calls them synchronously, in the order they subscribed. One that throws, or returns a promise that
 * rejects, is logged and does not stop the others (nor the emitter). A subscriber added or removed while an emit
 * runs takes effect from the next emit.
 */
export class Listeners<A extends unknown[]> implements Subscribable<A> {
  /** Replaced, never changed in place: an emit goes through the list as it was when it began. */
  private entries: ReadonlyArray<{ readonly listener: (...args: A) => unknown }> = [];

  /**
   * `what` names the hook in the log line of a failed subscriber; without a logger that line is a process warning
   * (stderr).
   */
  constructor(
    private readonly what: string,
    private readonly logger?: Logger,
  ) {}

  subscribe(listener: (...args: A) => unknown): () => void {
    // An entry of its own: the same function subscribed twice is two subscriptions, each removed by its own call.
    const entry = { listener };
    this.entries = [...this.entries, entry];
    return () => {
      this.entries = this.entries.filter((e) => e !== entry);
    };
  }

  /** Subscribers now. */
  get size(): number {
    return this.entries.length;
  }

  emit(...args: A): void {
    for (const { listener } of this.entries) {
      try {
        const result = listener(...args);
        if (isThenable(result)) result.then(undefined, (err: unknown) => this.failed(err));
      } catch (err) {
        this.failed(err);
      }
    }
  }

  private failed(err: unknown): void {
    const message = err instanceof Error ? err.message : String(err);
    try {
      if (this.logger) this.logger.warn({ err: message, hook: this.what }, "a subscriber failed; the others were still told");
      else process.emitWarning(`a subscriber of ${this.what} failed: ${message}`);
    } catch {
      // A logger that throws must not stop the other subscribers either.
    }
  }
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return value !== null && (typeof value === "object" || typeof value === "function") && typeof (value as { then?: unknown }).then === "function";
}
