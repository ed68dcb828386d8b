/**
 * Jittered exponential backoff within a deadline. Used for reads and for transactions that failed before
 * COMMIT; never for something that may already have happened.
 */
export interface RetryOptions {
  /** Total time allowed, first attempt included. */
  deadlineMs: number;
  baseDelayMs?: number;
  maxDelayMs?: number;
  shouldRetry: (err: unknown) => boolean;
}

export async function retry<T>(attempt: (n: number) => Promise<T>, options: RetryOptions): Promise<T> {
  const deadline = Date.now() + options.deadlineMs;
  const base = options.baseDelayMs ?? 25;
  const cap = options.maxDelayMs ?? 500;
  for (let n = 0; ; n++) {
    try {
      return await attempt(n);
    } catch (err) {
      if (!options.shouldRetry(err)) throw err;
      // "Full jitter": spreads the retries of many replicas hitting the same fault.
      const delay = Math.random() * Math.min(cap, base * 2 ** n);
      if (Date.now() + delay >= deadline) throw err;
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
  }
}
