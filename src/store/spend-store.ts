import type { Queryable } from "./db.js";

/** The durable spend ledger (sql/0004_spend_ledger.sql). Owner: limits/spend-ledger and the sweeper. */

/** A level of a request, as the durable ledger knows it (limits/admission.ts has the same shape). */
export interface SpendLevel {
  level: "key" | "team_member" | "user" | "team";
  /** key_id, team_id or user_id; a team member's user_id. */
  id: string;
  /** A team member's team. */
  teamId?: string;
}

export interface SpendItem extends SpendLevel {
  /** The spend generation charged under, or null when the replica did not know it (no live ledger). */
  generation: number | null;
  cost: number;
}

export interface SpendBatch {
  batchId: string;
  replicaId: string;
  requests: number;
  items: SpendItem[];
}

// One statement, so it commits entirely or not at all; the batch row makes it idempotent: a retry of a
// batch whose first attempt landed (the answer was lost) finds the row and charges nothing. Every level a
// request belongs to is charged in it: the key's row, the team's, the user's and the team member's.
// Items of an older generation belong to a period that was reset since: not added (sql/0004).
// (Data-modifying CTEs run whether or not the final SELECT reads them.)
const FLUSH_BATCH = `
WITH batch AS (
  INSERT INTO gh_spend_batches (batch_id, replica_id, requests, cost)
  VALUES ($1, $2, $3, (SELECT COALESCE(sum(c), 0) FROM unnest($6::float8[]) AS c))
  ON CONFLICT (batch_id) DO NOTHING
  RETURNING batch_id
), item AS (
  SELECT * FROM unnest($4::uuid[], $5::bigint[], $6::float8[]) AS i(key_id, generation, cost)
), due AS (
  SELECT i.key_id, k.spend_generation AS seen_generation, sum(i.cost) AS cost
  FROM item i JOIN gh_keys k ON k.key_id = i.key_id
  WHERE EXISTS (SELECT 1 FROM batch) AND (i.generation IS NULL OR i.generation = k.spend_generation)
  GROUP BY i.key_id, k.spend_generation
), charged AS (
  -- The generation is checked again here, on the row as locked: a reset that commits while this
  -- statement waits for the row makes Postgres re-check this condition against the reset row, and the
  -- old period's charge is then not added to the new one.
  UPDATE gh_keys k SET spend = k.spend + due.cost FROM due
  WHERE k.key_id = due.key_id AND k.spend_generation = due.seen_generation
  RETURNING k.key_id
), level_item AS (
  SELECT * FROM unnest($7::text[], $8::text[], $9::text[], $10::bigint[], $11::float8[]) AS i(level, id, team_id, generation, cost)
  WHERE EXISTS (SELECT 1 FROM batch)
), team_due AS (
  SELECT t.team_id, t.spend_generation AS seen_generation, sum(i.cost) AS cost
  FROM level_item i JOIN gh_teams t ON t.team_id = i.id
  WHERE i.level = 'team' AND (i.generation IS NULL OR i.generation = t.spend_generation)
  GROUP BY t.team_id, t.spend_generation
), team_charged AS (
  UPDATE gh_teams t SET spend = t.spend + d.cost FROM team_due d
  WHERE t.team_id = d.team_id AND t.spend_generation = d.seen_generation
  RETURNING t.team_id
), user_due AS (
  SELECT u.user_id, u.spend_generation AS seen_generation, sum(i.cost) AS cost
  FROM level_item i JOIN gh_users u ON u.user_id = i.id
  WHERE i.level = 'user' AND (i.generation IS NULL OR i.generation = u.spend_generation)
  GROUP BY u.user_id, u.spend_generation
), user_charged AS (
  UPDATE gh_users u SET spend = u.spend + d.cost FROM user_due d
  WHERE u.user_id = d.user_id AND u.spend_generation = d.seen_generation
  RETURNING u.user_id
), member_due AS (
  -- Only members of the team have a membership to charge (a key may name a user outside its team).
  SELECT i.team_id, i.id AS user_id, sum(i.cost) AS cost
  FROM level_item i JOIN gh_teams t ON t.team_id = i.team_id
  WHERE i.level = 'team_member' AND t.members_with_roles @> jsonb_build_array(jsonb_build_object('user_id', i.id))
  GROUP BY i.team_id, i.id
), member_charged AS (
  INSERT INTO gh_team_member_spend AS m (team_id, user_id, spend) SELECT team_id, user_id, cost FROM member_due
  ON CONFLICT (team_id, user_id) DO UPDATE SET spend = m.spend + EXCLUDED.spend
  RETURNING m.user_id
)
SELECT EXISTS (SELECT 1 FROM batch) AS applied,
  (SELECT count(*) FROM charged)::int AS keys_charged,
  (SELECT COALESCE(jsonb_agg(DISTINCT jsonb_build_array(r.level, r.id, r.generation::text)), '[]'::jsonb) FROM (
    SELECT 'key' AS level, i.key_id::text AS id, k.spend_generation AS generation FROM item i JOIN gh_keys k ON k.key_id = i.key_id
      WHERE i.generation IS NOT NULL AND i.generation < k.spend_generation
    UNION ALL
    SELECT 'team', t.team_id, t.spend_generation FROM level_item i JOIN gh_teams t ON t.team_id = i.id
      WHERE i.level = 'team' AND i.generation IS NOT NULL AND i.generation < t.spend_generation
    UNION ALL
    SELECT 'user', u.user_id, u.spend_generation FROM level_item i JOIN gh_users u ON u.user_id = i.id
      WHERE i.level = 'user' AND i.generation IS NOT NULL AND i.generation < u.spend_generation
  ) r) AS reset_since`;

export interface FlushOutcome {
  applied: boolean;
  /** Levels reset since some of this batch was charged, with their current generation. */
  resetSince: Array<{ level: SpendLevel["level"]; id: string; generation: string }>;
}

export async function flushSpendBatch(db: Queryable, batch: SpendBatch): Promise<FlushOutcome> {
  const keys = batch.items.filter((i) => i.level === "key");
  const levels = batch.items.filter((i) => i.level !== "key");
  const { rows } = await db.query<{ applied: boolean; reset_since: Array<[SpendLevel["level"], string, string]> }>(FLUSH_BATCH, [
    batch.batchId,
    batch.replicaId,
    batch.requests,
    keys.map((i) => i.id),
    keys.map((i) => i.generation),
    keys.map((i) => i.cost),
    levels.map((i) => i.level),
    levels.map((i) => i.id),
    levels.map((i) => i.teamId ?? null),
    levels.map((i) => i.generation),
    levels.map((i) => i.cost),
  ]);
  const row = rows[0]!;
  return { applied: row.applied, resetSince: row.reset_since.map(([level, id, generation]) => ({ level, id, generation })) };
}

const DURABLE_SPEND: Record<SpendLevel["level"], string> = {
  key: "SELECT spend, spend_generation FROM gh_keys WHERE key_id = $1::uuid",
  team: "SELECT spend, spend_generation FROM gh_teams WHERE team_id = $1",
  user: "SELECT spend, spend_generation FROM gh_users WHERE user_id = $1",
  team_member: "SELECT spend, spend_generation FROM gh_team_member_spend WHERE user_id = $1 AND team_id = $2",
};

/** A level's durable spend of the current period and its generation; 0 (generation 0) when it has no row. */
export async function readDurableSpend(db: Queryable, level: SpendLevel): Promise<{ spend: number; generation: string }> {
  const params = level.level === "team_member" ? [level.id, level.teamId] : [level.id];
  const { rows } = await db.query<{ spend: number; spend_generation: number }>(DURABLE_SPEND[level.level], params);
  return rows[0] ? { spend: rows[0].spend, generation: String(rows[0].spend_generation) } : { spend: 0, generation: "0" };
}

/** A level whose budget period ended: a key, a team or a user (team members have no period). */
export interface DueBudget {
  level: "key" | "team" | "user";
  id: string;
  budgetDuration: string;
  budgetResetAt: Date;
}

// Per level: its table and id column. Written out, never assembled from input.
const BUDGET_TABLES = {
  key: { table: "gh_keys", match: "key_id = $1::uuid" },
  team: { table: "gh_teams", match: "team_id = $1" },
  user: { table: "gh_users", match: "user_id = $1" },
} as const;

export async function findDueBudgets(db: Queryable, limit: number): Promise<DueBudget[]> {
  const { rows } = await db.query<{ level: DueBudget["level"]; id: string; budget_duration: string; budget_reset_at: Date }>(
    `SELECT * FROM (
       (SELECT 'key' AS level, key_id::text AS id, budget_duration, budget_reset_at FROM gh_keys
          WHERE budget_reset_at <= now() AND budget_duration IS NOT NULL ORDER BY budget_reset_at LIMIT $1)
       UNION ALL
       (SELECT 'team', team_id, budget_duration, budget_reset_at FROM gh_teams
          WHERE budget_reset_at <= now() AND budget_duration IS NOT NULL AND deleted_at IS NULL ORDER BY budget_reset_at LIMIT $1)
       UNION ALL
       (SELECT 'user', user_id, budget_duration, budget_reset_at FROM gh_users
          WHERE budget_reset_at <= now() AND budget_duration IS NOT NULL AND deleted_at IS NULL ORDER BY budget_reset_at LIMIT $1)
     ) due ORDER BY budget_reset_at LIMIT $1`,
    [limit],
  );
  return rows.map((r) => ({ level: r.level, id: r.id, budgetDuration: r.budget_duration, budgetResetAt: r.budget_reset_at }));
}

/**
 * Starts a new budget period for one key, team or user: the next reset is the first multiple of the duration
 * after now, counted from the last reset time, so a sweeper that ran late does not shift later periods.
 * Spend goes to 0 in a new generation. Guarded by "the period has ended" re-checked on the locked row, so two
 * replicas' sweepers reset a period once. Returns the new generation, or null when another replica did it
 * first (or when `durationMs` is not above zero: nothing to divide by).
 */
export async function resetBudgetPeriod(db: Queryable, level: DueBudget["level"], id: string, durationMs: number): Promise<string | null> {
  const { table, match } = BUDGET_TABLES[level];
  const { rows } = await db.query<{ spend_generation: number }>(
    `UPDATE ${table} SET spend = 0, spend_generation = spend_generation + 1,
       budget_reset_at = budget_reset_at + (floor(extract(epoch FROM (now() - budget_reset_at)) * 1000 / $2::float8) + 1) * $2::float8 * interval '1 millisecond'
     WHERE ${match} AND budget_reset_at <= now() AND $2::float8 > 0
     RETURNING spend_generation`,
    [id, durationMs],
  );
  return rows[0] ? String(rows[0].spend_generation) : null;
}

/** /key/{key}/reset_spend: the period's spend set to `to`, in a new generation; the caller holds the key's row lock. */
export async function resetSpend(db: Queryable, keyId: string, to: number): Promise<{ keyId: string; generation: string }> {
  const { rows } = await db.query<{ key_id: string; spend_generation: number }>(
    "UPDATE gh_keys SET spend = $2, spend_generation = spend_generation + 1 WHERE key_id = $1 RETURNING key_id, spend_generation",
    [keyId, to],
  );
  return { keyId: rows[0]!.key_id, generation: String(rows[0]!.spend_generation) };
}

export async function pruneSpendBatches(db: Queryable, retentionMs: number): Promise<number> {
  const { rowCount } = await db.query("DELETE FROM gh_spend_batches WHERE flushed_at < now() - $1::bigint * interval '1 millisecond'", [retentionMs]);
  return rowCount ?? 0;
}
