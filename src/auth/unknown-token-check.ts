/**
 * Tokens the token filter says no key ever had are still asked of Postgres — in batches, so a key generated on
 * another replica a moment ago, used here before its event arrived, is found rather than refused, however many
 * unknown tokens arrive at the same time (docs/security.md, "Order of work on a request").
 *
 * A batch is one statement for every token waiting. It is sent when enough tokens wait that the flood pays for
 * it (`minBatch`: at most 1,000 / minBatch statements per 1,000 unknown tokens), or when the small allowance of
 * statements a second (`perSecond`) has one left, so a lone token is not kept waiting for company. A token waits
 * at most until the allowance refills (1 / perSecond). Past `maxWaiting` tokens waiting (a flood while Postgres
 * is slow), a new one is refused at once: the filter already says no key had it, and memory stays bounded.
 */

export interface UnknownTokenCheckOptions {
  /** Which of these token hashes may authenticate now (one statement). */
  lookup: (hashes: string[]) => Promise<Set<string>>;
  /** Tokens that make a batch worth a statement of its own. */
  minBatch?: number;
  /** Tokens one statement asks about at most. */
  maxBatch?: number;
  /** Statements a second for batches smaller than minBatch. */
  perSecond?: number;
  /** Tokens waiting at most; past it a new one is answered "no" at once. */
  maxWaiting?: number;
}

interface Waiting {
  hash: string;
  resolve: (exists: boolean) => void;
}

// 150: under a flood about 7 statements per 1,000 unknown tokens, with room under 10 for the two a second that
// lone tokens may take. 2 a second: a lone unknown token waits at most half a second. 4 batches in flight keep a
// slow Postgres from piling statements up.
const DEFAULTS = { minBatch: 150, maxBatch: 2_000, perSecond: 2, maxWaiting: 20_000 };
const MAX_IN_FLIGHT = 4;

export class UnknownTokenCheck {
  private waiting: Waiting[] = [];
  private inFlight = 0;
  private timer: NodeJS.Timeout | null = null;
  private readonly bucket: TokenBucket;
  private readonly o: Required<UnknownTokenCheckOptions>;
  readonly counters = { batches: 0, asked: 0, found: 0, refusedWaiting: 0, failures: 0 };

  constructor(options: UnknownTokenCheckOptions) {
    this.o = { ...DEFAULTS, ...options };
    this.bucket = new TokenBucket(this.o.perSecond, this.o.perSecond);
  }

  /** Resolves true when Postgres has a key (or a key in grace) with this token hash; false when not, or unknown. */
  exists(hash: string): Promise<boolean> {
    if (this.waiting.length >= this.o.maxWaiting) {
      this.counters.refusedWaiting++;
      return Promise.resolve(false);
    }
    return new Promise((resolve) => {
      this.waiting.push({ hash, resolve });
      this.send();
    });
  }

  private send(): void {
    while (this.waiting.length > 0 && this.inFlight < MAX_IN_FLIGHT) {
      if (this.waiting.length < this.o.minBatch && !this.bucket.take()) {
        this.retryWhenAllowed();
        return;
      }
      const batch = this.waiting.splice(0, this.o.maxBatch);
      void this.ask(batch);
    }
  }

  private retryWhenAllowed(): void {
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.send();
    }, this.bucket.msUntilNext());
    this.timer.unref();
  }

  private async ask(batch: Waiting[]): Promise<void> {
    this.inFlight++;
    this.counters.batches++;
    this.counters.asked += batch.length;
    try {
      const found = await this.o.lookup([...new Set(batch.map((w) => w.hash))]);
      this.counters.found += found.size;
      for (const w of batch) w.resolve(found.has(w.hash));
    } catch {
      // Postgres could not be asked: the filter's answer stands (it has seen every event this replica applied).
      this.counters.failures++;
      for (const w of batch) w.resolve(false);
    } finally {
      this.inFlight--;
      this.send();
    }
  }

  /** Tokens waiting right now (tests). */
  get pending(): number {
    return this.waiting.length;
  }
}

/** So many per second, at most `burst` at once. */
class TokenBucket {
  private tokens: number;
  private at = performance.now();

  constructor(
    private readonly perSecond: number,
    private readonly burst: number,
  ) {
    this.tokens = burst;
  }

  take(): boolean {
    this.refill();
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }

  msUntilNext(): number {
    this.refill();
    return Math.max(1, Math.ceil(((1 - this.tokens) / this.perSecond) * 1000));
  }

  private refill(): void {
    const now = performance.now();
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.at) / 1000) * this.perSecond);
    this.at = now;
  }
}
