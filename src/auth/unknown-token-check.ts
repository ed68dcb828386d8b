/**
 * A token the token filter refuses is answered only once this replica has caught up on every key event committed
 * before the token arrived — so a key generated on another replica a moment ago, used here before its event
 * arrived, is found rather than refused, however many unknown tokens arrive at the same time (docs/security.md,
 * "Order of work on a request").
 *
 * The proof costs Postgres nothing of its own: a token waits for the events this replica applies anyway. Its key's
 * event adds the token to the filter (`noted`): the token goes on to the full look-up. A catch-up that began after
 * the token arrived completes without it (`caughtUp`): no key had it then, 401. With notifications flowing a new
 * key's event arrives in milliseconds; without them, the heartbeat's catch-up comes within its interval. A flood
 * does not wait a whole heartbeat: once `earlyCatchUpEvery` tokens wait, one catch-up is asked for them all (one
 * statement per that many unknown tokens). Past `maxWaiting` tokens waiting (a flood while Postgres is slow), a new
 * one is refused at once, as the filter says, and so is one still waiting after `maxWaitMs` (no catch-up could
 * complete: this replica is about to stop trusting its caches anyway).
 */

export interface UnknownTokenCheckOptions {
  /** Asks coherence for a catch-up soon (coalesced with one in flight); never throws. */
  requestCatchUp: () => void;
  /** The monotonic clock catch-ups are dated by. */
  now: () => number;
  /** Tokens waiting that are worth a catch-up of their own. */
  earlyCatchUpEvery?: number;
  /** Tokens waiting at most; past it a new one is answered "no" at once. */
  maxWaiting?: number;
  /** The longest a token waits (the freshness bound: past it this replica's caches are not trusted). */
  maxWaitMs?: number;
}

interface Waiting {
  hash: string;
  /** Monotonic time it arrived: a catch-up that began after it settles it. */
  since: number;
  resolve: (exists: boolean) => void;
  settled: boolean;
}

// 150: a flood costs about 7 statements per 1,000 unknown tokens (the target is 10). 20,000 waiting: a flood of
// ~17,000 a second through one heartbeat, each a request object and a promise. 2 s: the freshness bound.
const DEFAULTS = { earlyCatchUpEvery: 150, maxWaiting: 20_000, maxWaitMs: 2_000 };

export class UnknownTokenCheck {
  /** In order of arrival (so of `since`): a catch-up settles a prefix of it. */
  private queue: Waiting[] = [];
  private head = 0;
  private readonly byHash = new Map<string, Waiting[]>();
  private count = 0;
  private sinceLastRequest = 0;
  private readonly o: Required<UnknownTokenCheckOptions>;
  private sweep: NodeJS.Timeout | null = null;
  readonly counters = { asked: 0, found: 0, refusedAfterCatchUp: 0, refusedWaiting: 0, timedOut: 0, catchUpsAsked: 0 };

  constructor(options: UnknownTokenCheckOptions) {
    this.o = { ...DEFAULTS, ...options };
  }

  /** Resolves true once an applied event names the hash; false once a catch-up begun after now completes without it. */
  exists(hash: string): Promise<boolean> {
    this.counters.asked++;
    if (this.count >= this.o.maxWaiting) {
      this.counters.refusedWaiting++;
      return Promise.resolve(false);
    }
    return new Promise((resolve) => {
      const entry: Waiting = { hash, since: this.o.now(), resolve, settled: false };
      this.queue.push(entry);
      const list = this.byHash.get(hash);
      if (list) list.push(entry);
      else this.byHash.set(hash, [entry]);
      this.count++;
      if (++this.sinceLastRequest >= this.o.earlyCatchUpEvery) {
        this.sinceLastRequest = 0;
        this.counters.catchUpsAsked++;
        this.o.requestCatchUp();
      }
      this.scheduleSweep();
    });
  }

  /** Tokens an applied event named (through the token filter's keeper): their waiters go on to the look-up. */
  noted(tokens: readonly string[]): void {
    if (this.count === 0) return;
    for (const t of tokens) {
      const list = this.byHash.get(t);
      if (!list) continue;
      this.byHash.delete(t);
      for (const w of list) {
        if (w.settled) continue;
        w.settled = true;
        this.count--;
        this.counters.found++;
        w.resolve(true);
      }
    }
  }

  /** A catch-up that began at monotonic `startedAt` completed: every token that arrived before it had no key. */
  caughtUp(startedAt: number): void {
    this.settleUpTo(startedAt, "refusedAfterCatchUp");
  }

  /**
   * The database is another history (coherence's epoch): its keys arrive as no event this replica applies, so every
   * token waiting goes on to the full look-up instead.
   */
  lookUpAll(): void {
    for (const w of this.queue.slice(this.head)) {
      if (w.settled) continue;
      w.settled = true;
      w.resolve(true);
    }
    this.queue = [];
    this.head = 0;
    this.count = 0;
    this.sinceLastRequest = 0;
    this.byHash.clear();
  }

  /** Tokens waiting right now (tests). */
  get pending(): number {
    return this.count;
  }

  /** Refuses, in order of arrival, every token that arrived at or before `upTo`. */
  private settleUpTo(upTo: number, counter: "refusedAfterCatchUp" | "timedOut"): void {
    while (this.head < this.queue.length && this.queue[this.head]!.since <= upTo) {
      const w = this.queue[this.head++]!;
      if (w.settled) continue;
      w.settled = true;
      this.count--;
      this.counters[counter]++;
      const list = this.byHash.get(w.hash);
      if (list) {
        const rest = list.filter((x) => x !== w);
        if (rest.length === 0) this.byHash.delete(w.hash);
        else this.byHash.set(w.hash, rest);
      }
      w.resolve(false);
    }
    if (this.head === this.queue.length) {
      this.queue = [];
      this.head = 0;
      this.sinceLastRequest = 0;
    } else if (this.head > 1_024 && this.head * 2 > this.queue.length) {
      this.queue = this.queue.slice(this.head);
      this.head = 0;
    }
  }

  /** Refuses tokens that waited past maxWaitMs (no catch-up completed: Postgres unreachable). */
  private scheduleSweep(): void {
    if (this.sweep) return;
    this.sweep = setTimeout(() => {
      this.sweep = null;
      this.settleUpTo(this.o.now() - this.o.maxWaitMs, "timedOut");
      if (this.count > 0) this.scheduleSweep();
    }, this.o.maxWaitMs / 4);
    this.sweep.unref();
  }
}
