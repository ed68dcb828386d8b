import pg from "pg";
import { checkerNow } from "./history.js";

/**
 * The checker's own LISTEN connection, straight to the Postgres primary (never through a fault proxy): the moment
 * each change's NOTIFY arrives is the moment it committed, on the checker's clock (Postgres delivers a
 * notification only at COMMIT). An event row's `created_at` is taken before COMMIT, which a replica whose
 * Postgres answers slowly may send seconds later; the checker dates every change by its notification instead.
 *
 * Event ids are issued again by a promoted standby, so a notification is filed under the generation of the
 * primary that sent it (0 the first, one more at each promotion): follow() moves the connection to the new
 * primary before any replica can reach it, so no commit goes unheard.
 */
export const CHECKER_APPLICATION_NAME = "history-checker";

export interface HeardEvent {
  gen: number;
  id: number;
  kind: string;
  /** Absent when the payload carried none (too many tokens). */
  tokens: string[] | null;
  /** Arrival of the notification on the checker's clock. */
  at: number;
  /** The event row's created_at (the database's clock), from the payload. */
  writtenAt: number;
}

export class CommitClock {
  readonly heard = new Map<string, HeardEvent>();
  /** Spans during which the connection was down for a reason other than a failover (changes then fall back to created_at). */
  readonly deaf: Array<{ from: number; to: number }> = [];
  private client: pg.Client | null = null;
  private gen = 0;
  private url = "";
  private closed = false;
  private reconnecting = false;

  static key(gen: number, id: number): string {
    return `${gen}:${id}`;
  }

  /** Listens on the primary at `url` as generation `gen`; resolves once LISTEN is in place. */
  async follow(url: string, gen: number): Promise<void> {
    this.gen = gen;
    this.url = url;
    const old = this.client;
    this.client = null;
    await old?.end().catch(() => {});
    await this.connect();
  }

  private async connect(): Promise<void> {
    const gen = this.gen;
    const client = new pg.Client({ connectionString: this.url, application_name: CHECKER_APPLICATION_NAME, connectionTimeoutMillis: 3_000 });
    client.on("notification", (msg) => {
      const at = checkerNow();
      if (!msg.payload) return;
      const p = JSON.parse(msg.payload) as { id: number; k: string; at: number; t?: string[] | null };
      this.heard.set(CommitClock.key(gen, p.id), { gen, id: p.id, kind: p.k, tokens: p.t ?? null, at, writtenAt: p.at });
    });
    const lost = () => {
      if (this.client !== client || this.closed) return;
      this.client = null;
      void this.reconnect(gen);
    };
    client.on("error", lost);
    client.on("end", lost);
    await client.connect();
    await client.query("LISTEN gatehouse_key_events");
    if (this.gen !== gen || this.closed) {
      await client.end().catch(() => {});
      return;
    }
    this.client = client;
  }

  /** The connection dropped without a failover (it should not): listen again on the same primary, noting the gap. */
  private async reconnect(gen: number): Promise<void> {
    if (this.reconnecting) return;
    this.reconnecting = true;
    const from = checkerNow();
    try {
      while (!this.closed && this.gen === gen && !this.client) {
        try {
          await this.connect();
        } catch {
          await new Promise((r) => setTimeout(r, 100));
        }
      }
    } finally {
      this.reconnecting = false;
      this.deaf.push({ from, to: checkerNow() });
    }
  }

  /** The connection goes away with its primary (a failover is under way): no reconnection until follow(). */
  detach(): void {
    const old = this.client;
    this.client = null;
    void old?.end().catch(() => {});
  }

  async close(): Promise<void> {
    this.closed = true;
    const old = this.client;
    this.client = null;
    await old?.end().catch(() => {});
  }
}
