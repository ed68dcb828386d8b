import { Listeners } from "../listeners.js";
import type { Logger } from "../logger.js";
import { TokenFilter } from "../auth/token-filter.js";
import type { Database } from "../store/database.js";
import { countTokens, tokensAfter } from "../store/key-store.js";
import { Periodic } from "../timers/periodic.js";

export interface TokenFilterKeeperOptions {
  db: Database;
  logger: Logger;
  rebuildIntervalMs: number;
  falsePositiveRate: number;
}

// Rows read per page while building.
const PAGE = 10_000;
// Room to grow before the next rebuild: the false-positive rate holds up to twice today's keys.
const HEADROOM = 2;
const MIN_CAPACITY = 100_000;

/**
 * Keeps this replica's token filter (auth/token-filter.ts) holding every token that can authenticate.
 *
 * - Built from Postgres at start (in pages, off the request path: until it is ready, no filter is used), and
 *   rebuilt every `rebuildIntervalMs` (deleted keys leave a Bloom filter only by a rebuild) and whenever the
 *   events needed to keep it current were pruned.
 * - Every applied key event adds its tokens (a new key's and a rotation's new token among them), through the
 *   same path that evicts caches, so the filter is as current as L1. Tokens seen while a rebuild runs are
 *   added to the new filter too.
 * - The authenticator consults it only while L1 is trusted: a replica that cannot vouch for having seen
 *   every recent event does not trust this copy either.
 */
export class TokenFilterKeeper {
  private filter: TokenFilter | null = null;
  private building: Promise<void> | null = null;
  private seenWhileBuilding: string[] | null = null;
  /** The rebuild every `rebuildIntervalMs`; null until started. */
  private loop: Periodic | null = null;
  /** Moved by forget(): a build begun before it must not install its filter. */
  private generation = 0;
  readonly counters = { builds: 0, buildFailures: 0 };

  /** Told of every token an applied event named, whatever the filter's state (tokens waiting on it). */
  readonly noted: Listeners<[tokens: readonly string[]]>;

  constructor(private readonly o: TokenFilterKeeperOptions) {
    this.noted = new Listeners("the token filter's noted tokens", o.logger);
  }

  /** The filter, once built; null before (then every unknown key goes to the database as before). */
  get current(): TokenFilter | null {
    return this.filter;
  }

  /** Builds the filter now, and again every `rebuildIntervalMs` after each build ends. */
  start(): void {
    if (this.loop) return;
    this.loop = new Periodic({
      logger: this.o.logger,
      intervalMs: this.o.rebuildIntervalMs,
      pass: () => this.rebuild(),
      failureMessage: "rebuilding the token filter failed; retrying at the next interval",
    });
    this.loop.start({ now: true });
  }

  async stop(): Promise<void> {
    const loop = this.loop;
    this.loop = null; // a forget() from now on starts no build
    await loop?.stop();
    await this.building; // one a forget() started
  }

  /** Tokens an applied event named: they may authenticate from now on. */
  noteTokens(tokens: readonly string[]): void {
    this.noted.emit(tokens);
    if (this.filter) for (const t of tokens) this.filter.add(t);
    if (this.seenWhileBuilding) this.seenWhileBuilding.push(...tokens);
  }

  /**
   * A new database history: the filter (and a build in flight) describe the old one, where a key of the new one
   * may be missing. No filter is used until a build from the new database is done (unknown keys go there).
   */
  forget(): void {
    this.filter = null;
    this.generation++;
    if (this.loop === null) return; // not started: no filter is in use
    // A build in flight is of the old history and will not install; the next one reads the new database.
    void (this.building ?? Promise.resolve()).then(() => this.rebuild());
  }

  /** Builds a new filter from the database and swaps it in; coalesces concurrent calls; never throws. */
  rebuild(): Promise<void> {
    if (this.building) return this.building;
    this.seenWhileBuilding = [];
    this.building = this.build()
      .catch((err: Error) => {
        this.counters.buildFailures++;
        this.o.logger.warn({ err: err.message }, "building the token filter failed; unknown keys go to the database until it succeeds");
      })
      .finally(() => {
        this.building = null;
        this.seenWhileBuilding = null;
      });
    return this.building;
  }

  private async build(): Promise<void> {
    const generation = this.generation;
    const count = await this.o.db.query(countTokens);
    const next = new TokenFilter(Math.max(MIN_CAPACITY, count * HEADROOM), this.o.falsePositiveRate);
    for (const table of ["keys", "deprecated"] as const) {
      let after = "";
      for (;;) {
        const page = await this.o.db.query((q) => tokensAfter(q, table, after, PAGE));
        for (const t of page) next.add(t);
        if (page.length < PAGE) break;
        after = page.at(-1)!;
      }
    }
    for (const t of this.seenWhileBuilding ?? []) next.add(t);
    if (generation !== this.generation) return; // read (partly) from the history forget() left behind
    this.filter = next;
    this.counters.builds++;
  }
}
