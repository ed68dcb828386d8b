import type { BudgetPeriod } from "../config/duration.js";
import type { Queryable } from "./db.js";

/** The durable spend ledger (sql/0004_spend_ledger.sql). Owner: limits/spend-ledger and the sweeper. */

/** A level of a request, as the durable ledger knows it (limits/admission.ts has the same shape). */
export interface SpendLevel {
  level: "key" | "team_member" | "user" | "team" | "key_model";
  /** key_id, team_id or user_id; a team member's user_id; a key's model's key_id. */
  id: string;
  /** A team member's team. */
  teamId?: string;
  /** A key's model (level key_model). */
  model?: string;
  /** A key's model: its budget's period as a Postgres interval, which a first charge starts; null for none. */
  budgetInterval?: string | null;
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
// batch whose first attempt landed (the answer was lost) finds the row, charges nothing, and is told the soft
// budgets the first attempt took across (kept with the batch), which no one has told yet. Every level a
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
  RETURNING k.key_id, k.key_alias, k.spend, k.soft_budget, k.max_budget, due.cost
), level_item AS (
  SELECT * FROM unnest($7::text[], $8::text[], $9::text[], $10::bigint[], $11::float8[], $12::text[]) AS i(level, id, team_id, generation, cost, budget_interval)
  WHERE EXISTS (SELECT 1 FROM batch)
), team_due AS (
  SELECT t.team_id, t.spend_generation AS seen_generation, sum(i.cost) AS cost
  FROM level_item i JOIN gh_teams t ON t.team_id = i.id
  WHERE i.level = 'team' AND (i.generation IS NULL OR i.generation = t.spend_generation)
  GROUP BY t.team_id, t.spend_generation
), team_charged AS (
  UPDATE gh_teams t SET spend = t.spend + d.cost FROM team_due d
  WHERE t.team_id = d.team_id AND t.spend_generation = d.seen_generation
  RETURNING t.team_id, t.team_alias, t.spend, t.soft_budget, t.max_budget, d.cost
), user_due AS (
  SELECT u.user_id, u.spend_generation AS seen_generation, sum(i.cost) AS cost
  FROM level_item i JOIN gh_users u ON u.user_id = i.id
  WHERE i.level = 'user' AND (i.generation IS NULL OR i.generation = u.spend_generation)
  GROUP BY u.user_id, u.spend_generation
), user_charged AS (
  UPDATE gh_users u SET spend = u.spend + d.cost FROM user_due d
  WHERE u.user_id = d.user_id AND u.spend_generation = d.seen_generation
  RETURNING u.user_id
), key_model_charged AS (
  -- A key's spend on one model (its model_max_budget): the first charge makes the row and starts its period; a later
  -- one adds within the generation it was made in (a reset since started a new period this charge is not part of).
  INSERT INTO gh_key_model_spend AS m (key_id, model, spend, spend_generation, budget_reset_at)
  SELECT k.key_id, i.team_id, sum(i.cost), COALESCE(max(i.generation), 0), now() + max(i.budget_interval)::interval
  FROM level_item i JOIN gh_keys k ON k.key_id::text = i.id
  WHERE i.level = 'key_model'
  GROUP BY k.key_id, i.team_id
  ON CONFLICT (key_id, model) DO UPDATE SET spend = m.spend + EXCLUDED.spend
    WHERE m.spend_generation = EXCLUDED.spend_generation
  RETURNING m.key_id
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
), crossed AS (
  -- Keys and teams this batch took across their soft budget: the row lock orders replicas' flushes, so exactly one
  -- charge crosses it, once per budget period (a reset starts spend at 0 again).
  SELECT COALESCE(jsonb_agg(c), '[]'::jsonb) AS list FROM (
     SELECT jsonb_build_object('level', 'key', 'key_id', key_id, 'key_alias', key_alias, 'spend', spend, 'soft_budget', soft_budget, 'max_budget', max_budget) AS c
       FROM charged WHERE soft_budget IS NOT NULL AND spend >= soft_budget AND spend - cost < soft_budget
     UNION ALL
     SELECT jsonb_build_object('level', 'team', 'team_id', team_id, 'team_alias', team_alias, 'spend', spend, 'soft_budget', soft_budget, 'max_budget', max_budget)
       FROM team_charged WHERE soft_budget IS NOT NULL AND spend >= soft_budget AND spend - cost < soft_budget
  ) c
), crossed_kept AS (
  -- Kept with the batch, for a retry of it (sql/0017).
  INSERT INTO gh_spend_batch_crossings (batch_id, crossed)
  SELECT $1, list FROM crossed WHERE list <> '[]'::jsonb AND EXISTS (SELECT 1 FROM batch)
)
SELECT EXISTS (SELECT 1 FROM batch) AS applied,
  (SELECT count(*) FROM charged)::int AS keys_charged,
  (SELECT list FROM crossed) AS soft_budget_crossed,
  (SELECT COALESCE(jsonb_agg(DISTINCT jsonb_build_array(r.level, r.id, r.generation::text)), '[]'::jsonb) FROM (
    SELECT 'key' AS level, i.key_id::text AS id, k.spend_generation AS generation FROM item i JOIN gh_keys k ON k.key_id = i.key_id
      WHERE i.generation IS NOT NULL AND i.generation < k.spend_generation
    UNION ALL
    SELECT 'team', t.team_id, t.spend_generation FROM level_item i JOIN gh_teams t ON t.team_id = i.id
      WHERE i.level = 'team' AND i.generation IS NOT NULL AND i.generation < t.spend_generation
    UNION ALL
    SELECT 'user', u.user_id, u.spend_generation FROM level_item i JOIN gh_users u ON u.user_id = i.id
      WHERE i.level = 'user' AND i.generation IS NOT NULL AND i.generation < u.spend_generation
    UNION ALL
    SELECT 'key_model', m.key_id::text || ' ' || m.model, m.spend_generation FROM level_item i JOIN gh_key_model_spend m ON m.key_id::text = i.id AND m.model = i.team_id
      WHERE i.level = 'key_model' AND i.generation IS NOT NULL AND i.generation < m.spend_generation
  ) r) AS reset_since`;

/** A key's (or a team's) spend crossed its soft budget in a flush. */
export type SoftBudgetCrossing = ({ level: "key"; key_id: string; key_alias: string | null } | { level: "team"; team_id: string; team_alias: string | null }) & {
  spend: number;
  soft_budget: number;
  max_budget: number | null;
};

export interface FlushOutcome {
  applied: boolean;
  softBudgetCrossed: SoftBudgetCrossing[];
  /** Levels reset since some of this batch was charged, with their current generation. */
  resetSince: Array<{ level: SpendLevel["level"]; id: string; model?: string; generation: string }>;
}

/**
 * What an applied batch took across, for a retry of it. Its own statement: the flush's snapshot was taken before it
 * waited on the batch row, so it cannot see a first attempt that committed while it waited (a retry sent while the
 * first attempt, its client gone, still ran).
 */
async function crossingsKeptWith(db: Queryable, batchId: string): Promise<SoftBudgetCrossing[]> {
  const { rows } = await db.query<{ crossed: SoftBudgetCrossing[] }>("SELECT crossed FROM gh_spend_batch_crossings WHERE batch_id = $1", [batchId]);
  return rows[0]?.crossed ?? [];
}

export async function flushSpendBatch(db: Queryable, batch: SpendBatch): Promise<FlushOutcome> {
  const keys = batch.items.filter((i) => i.level === "key");
  const levels = batch.items.filter((i) => i.level !== "key");
  const { rows } = await db.query<{ applied: boolean; reset_since: Array<[SpendLevel["level"], string, string]>; soft_budget_crossed: SoftBudgetCrossing[] }>(FLUSH_BATCH, [
    batch.batchId,
    batch.replicaId,
    batch.requests,
    keys.map((i) => i.id),
    keys.map((i) => i.generation),
    keys.map((i) => i.cost),
    levels.map((i) => i.level),
    levels.map((i) => i.id),
    // The scope of a level: a team member's team, a key's model.
    levels.map((i) => i.teamId ?? i.model ?? null),
    levels.map((i) => i.generation),
    levels.map((i) => i.cost),
    levels.map((i) => i.budgetInterval ?? null),
  ]);
  const row = rows[0]!;
  return {
    applied: row.applied,
    softBudgetCrossed: row.applied ? row.soft_budget_crossed : await crossingsKeptWith(db, batch.batchId),
    // A key's model comes back as "<key_id> <model>" (a model name may hold any character but the key_id none).
    resetSince: row.reset_since.map(([level, id, generation]) => {
      if (level !== "key_model") return { level, id, generation };
      const space = id.indexOf(" ");
      return { level, id: id.slice(0, space), model: id.slice(space + 1), generation };
    }),
  };
}

const DURABLE_SPEND: Record<SpendLevel["level"], string> = {
  key: "SELECT spend, spend_generation FROM gh_keys WHERE key_id = $1::uuid",
  key_model: "SELECT spend, spend_generation FROM gh_key_model_spend WHERE key_id = $1::uuid AND model = $2",
  team: "SELECT spend, spend_generation FROM gh_teams WHERE team_id = $1",
  user: "SELECT spend, spend_generation FROM gh_users WHERE user_id = $1",
  team_member: "SELECT spend, spend_generation FROM gh_team_member_spend WHERE user_id = $1 AND team_id = $2",
};

/** A level's durable spend of the current period and its generation; 0 (generation 0) when it has no row. */
export async function readDurableSpend(db: Queryable, level: SpendLevel): Promise<{ spend: number; generation: string }> {
  const params = level.level === "team_member" ? [level.id, level.teamId] : level.level === "key_model" ? [level.id, level.model] : [level.id];
  const { rows } = await db.query<{ spend: number; spend_generation: number }>(DURABLE_SPEND[level.level], params);
  return rows[0] ? { spend: rows[0].spend, generation: String(rows[0].spend_generation) } : { spend: 0, generation: "0" };
}

/** A level whose budget period ended: a key, a team, a user, or a key's model (team members have no period). */
export interface DueBudget {
  level: "key" | "team" | "user" | "key_model";
  id: string;
  /** A key's model: the model. */
  model?: string;
  budgetDuration: string;
  budgetResetAt: Date;
}

// Per level: its table and id column. Written out, never assembled from input.
const BUDGET_TABLES = {
  key: { table: "gh_keys", match: "key_id = $1::uuid" },
  team: { table: "gh_teams", match: "team_id = $1" },
  user: { table: "gh_users", match: "user_id = $1" },
  key_model: { table: "gh_key_model_spend", match: "key_id = $1::uuid AND model = $3" },
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
       UNION ALL
       -- A key's model: its period as the key says now (a budget whose period was removed since stops resetting).
       (SELECT 'key_model', m.key_id::text || ' ' || m.model, k.model_max_budget->m.model->>'time_period', m.budget_reset_at
          FROM gh_key_model_spend m JOIN gh_keys k ON k.key_id = m.key_id
          WHERE m.budget_reset_at <= now() AND k.model_max_budget->m.model->>'time_period' IS NOT NULL ORDER BY m.budget_reset_at LIMIT $1)
     ) due ORDER BY budget_reset_at LIMIT $1`,
    [limit],
  );
  return rows.map((r) => {
    if (r.level !== "key_model") return { level: r.level, id: r.id, budgetDuration: r.budget_duration, budgetResetAt: r.budget_reset_at };
    const space = r.id.indexOf(" ");
    return { level: r.level, id: r.id.slice(0, space), model: r.id.slice(space + 1), budgetDuration: r.budget_duration, budgetResetAt: r.budget_reset_at };
  });
}

/**
 * Starts a new budget period for one key, team or user: the next reset is the first whole period after now,
 * counted from the last reset time, so a sweeper that ran late does not shift later periods (calendar months are
 * counted as months: a period from the 31st ends on the last day of a shorter month). Spend goes to 0 in a new
 * generation. Guarded by "the period has ended" re-checked on the locked row, so two replicas' sweepers reset a
 * period once. Returns the new generation, or null when another replica did it first (or when the period is not
 * above zero: nothing to count in).
 */
export async function resetBudgetPeriod(db: Queryable, level: DueBudget["level"], id: string, period: BudgetPeriod, model?: string): Promise<string | null> {
  const { table, match } = BUDGET_TABLES[level];
  const next =
    period.months !== undefined
      ? // Whole months elapsed since the reset time, plus one: the first month boundary after now.
        `budget_reset_at + ((extract(year FROM age(now(), budget_reset_at)) * 12 + extract(month FROM age(now(), budget_reset_at)))::int / $2::int + 1) * $2::int * interval '1 month'`
      : `budget_reset_at + (floor(extract(epoch FROM (now() - budget_reset_at)) * 1000 / $2::float8) + 1) * $2::float8 * interval '1 millisecond'`;
  const { rows } = await db.query<{ spend_generation: number }>(
    `UPDATE ${table} SET spend = 0, spend_generation = spend_generation + 1, budget_reset_at = ${next}
     WHERE ${match} AND budget_reset_at <= now() AND $2::${period.months !== undefined ? "int" : "float8"} > 0
     RETURNING spend_generation`,
    level === "key_model" ? [id, period.months ?? period.ms, model] : [id, period.months ?? period.ms],
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
