import type { Queryable } from "./db.js";
import type { KeyRow } from "./key-store.js";
import type { UserRow } from "./user-store.js";

/**
 * The totals behind LiteLLM's spend routes that scripts call (`/global/spend/keys`, `/global/spend/teams`,
 * `/spend/keys`, `/spend/users`; docs/spend-logs.md). Keys' and users' totals are their durable spend (the current
 * budget period's, all time without one) — by key, whatever token it had, so a rotated key is one entry. Teams' daily
 * spend comes from the spend logs' daily totals (`gh_spend_daily`).
 */

export async function keysBySpend(db: Queryable, limit: number): Promise<KeyRow[]> {
  return (await db.query<KeyRow>("SELECT * FROM gh_keys ORDER BY spend DESC, created_at DESC LIMIT $1", [limit])).rows;
}

export async function usersBySpend(db: Queryable, userId: string | undefined, limit: number): Promise<UserRow[]> {
  const { rows } = await db.query<UserRow>("SELECT * FROM gh_users WHERE deleted_at IS NULL AND ($1::text IS NULL OR user_id = $1) ORDER BY spend DESC, user_id LIMIT $2", [
    userId ?? null,
    limit,
  ]);
  return rows;
}

export interface TeamDay {
  day: string;
  team_id: string;
  spend: number;
}

/** Each team's spend per day (UTC) over the last `days` days, from the spend logs' daily totals. */
export async function teamSpendByDay(db: Queryable, days: number): Promise<Array<TeamDay & { team_alias: string | null }>> {
  const { rows } = await db.query<TeamDay & { team_alias: string | null }>(
    `SELECT to_char(d.day, 'YYYY-MM-DD') AS day, d.team_id, t.team_alias, sum(d.spend)::float8 AS spend
     FROM gh_spend_daily d LEFT JOIN gh_teams t ON t.team_id = d.team_id
     WHERE d.team_id <> '' AND d.day > (now() AT TIME ZONE 'UTC')::date - $1::int
     GROUP BY d.day, d.team_id, t.team_alias ORDER BY d.day, d.team_id`,
    [days],
  );
  return rows;
}
