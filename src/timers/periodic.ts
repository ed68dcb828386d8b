import type { Logger } from "../logger.js";

export interface PeriodicOptions {
  logger: Logger;
  /** From the end of one pass to the start of the next. */
  intervalMs: number;
  /** Spreads replicas apart: each wait is drawn from intervalMs × [1 − jitter/2, 1 + jitter/2]. */
  jitter?: number;
  /** One pass. A throw or rejection ends only this pass. */
  pass: () => unknown;
  /** Logged, with the error, when a pass fails; the log says the loop goes on. */
  failureMessage: string;
  /** A loop whose failures are routine (it keeps a last good value) logs them at debug. */
  failureLevel?: "warn" | "debug";
}

/**
 * One background loop of a replica; every loop runs on this one (upkeep/'s, the coherence heartbeat, the token
 * filter's rebuild, routing's resynchronisations and health checks), so they all behave alike. Passes
 * never overlap (the next is scheduled when one ends); a failed pass never escapes: it is logged, counted
 * in `counters.failures`, and the next one is scheduled as usual; the timer never keeps the process alive;
 * stop() waits for a pass in flight, so nothing runs after it against a closed pool.
 */
export class Periodic {
  readonly counters = { passes: 0, failures: 0 };
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  private stopped = true;

  constructor(private readonly o: PeriodicOptions) {}

  /** With `now`, the first pass runs at once instead of after one interval. */
  start(options: { now?: boolean } = {}): void {
    if (!this.stopped) return;
    this.stopped = false;
    if (options.now) this.run();
    else this.schedule();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.running;
  }

  private schedule(): void {
    if (this.stopped) return;
    const jitter = this.o.jitter ?? 0;
    this.timer = setTimeout(
      () => {
        this.timer = null;
        this.run();
      },
      this.o.intervalMs * (1 - jitter / 2 + Math.random() * jitter),
    );
    this.timer.unref();
  }

  private run(): void {
    this.running = this.once().finally(() => {
      this.running = null;
      this.schedule();
    });
  }

  private async once(): Promise<void> {
    try {
      await this.o.pass();
      this.counters.passes++;
    } catch (err) {
      this.counters.failures++;
      try {
        this.o.logger[this.o.failureLevel ?? "warn"]({ err: err instanceof Error ? err.message : String(err) }, this.o.failureMessage);
      } catch {
        // A logger that throws must not stop the loop either.
      }
    }
  }
}
