import { z } from "zod";
import { keyView } from "../keys/key-view.js";
import type { Database } from "../store/database.js";
import { keysBySpend, teamSpendByDay, usersBySpend } from "../store/spend-totals-store.js";
import { userView } from "../users/user-service.js";

/** The most rows one of these routes returns. */
const MAX_LIMIT = 10_000;

export const spendKeysQuerySchema = z.strictObject({ limit: z.coerce.number().int().min(1).max(MAX_LIMIT).optional() });
export const spendUsersQuerySchema = z.strictObject({ user_id: z.string().min(1).max(256).optional(), limit: z.coerce.number().int().min(1).max(MAX_LIMIT).optional() });

/**
 * LiteLLM's spend routes that scripts call, in LiteLLM's shapes (docs/spend-logs.md, "Spend by key, team and user"):
 * - `/global/spend/keys?limit=` — the keys that spent most: `[{api_key, key_id, key_alias, key_name, total_spend}]`
 *   (LiteLLM's default limit is all keys; here 100 unless `limit` says, at most 10,000);
 * - `/global/spend/teams` — the last 30 days per team: `{daily_spend: [{date, <team_id>: spend…}], teams: [team_id…],
 *   total_spend_per_team: [{team_id, team_alias, total_spend}]}`;
 * - `/spend/keys?limit=` — keys as `/key/info` shows them, most spent first;
 * - `/spend/users?user_id=&limit=` — users as `/user/info` shows them, most spent first.
 */
export class SpendTotals {
  constructor(private readonly db: Database) {}

  async topKeys(q: z.infer<typeof spendKeysQuerySchema>) {
    const rows = await this.db.query((db) => keysBySpend(db, q.limit ?? 100));
    return rows.map((r) => ({ api_key: r.token, key_id: r.key_id, key_alias: r.key_alias, key_name: r.key_name, total_spend: r.spend }));
  }

  async keys(q: z.infer<typeof spendKeysQuerySchema>) {
    return (await this.db.query((db) => keysBySpend(db, q.limit ?? 1_000))).map(keyView);
  }

  async users(q: z.infer<typeof spendUsersQuerySchema>) {
    return (await this.db.query((db) => usersBySpend(db, q.user_id, q.limit ?? 1_000))).map(userView);
  }

  async teams() {
    const rows = await this.db.query((db) => teamSpendByDay(db, 30));
    const byDay = new Map<string, Record<string, number | string>>();
    const totals = new Map<string, { team_id: string; team_alias: string | null; total_spend: number }>();
    for (const r of rows) {
      const day = byDay.get(r.day) ?? { date: r.day };
      day[r.team_id] = r.spend;
      byDay.set(r.day, day);
      const t = totals.get(r.team_id) ?? { team_id: r.team_id, team_alias: r.team_alias, total_spend: 0 };
      t.total_spend += r.spend;
      totals.set(r.team_id, t);
    }
    return {
      daily_spend: [...byDay.values()],
      teams: [...totals.keys()],
      total_spend_per_team: [...totals.values()].sort((a, b) => b.total_spend - a.total_spend),
    };
  }
}
