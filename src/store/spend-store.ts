import type { Queryable } from "./db.js";

/** The durable spend ledger (sql/0004_spend_ledger.sql). Owner: limits/spend-ledger and the sweeper. */

export interface SpendItem {
  keyId: string;
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
// batch whose first attempt landed (the answer was lost) finds the row and charges nothing.
// Items of an older generation belong to a period that was reset since: not added (sql/0004).
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
)
SELECT EXISTS (SELECT 1 FROM batch) AS applied,
  (SELECT count(*) FROM charged)::int AS keys_charged,
  ARRAY(SELECT DISTINCT i.key_id::text || ':' || k.spend_generation FROM item i JOIN gh_keys k ON k.key_id = i.key_id
        WHERE i.generation IS NOT NULL AND i.generation < k.spend_generation) AS reset_since`;

export interface FlushOutcome {
  applied: boolean;
  /** key_id and current generation of keys reset since some of this batch was charged. */
  resetSince: Array<{ keyId: string; generation: string }>;
}

export async function flushSpendBatch(db: Queryable, batch: SpendBatch): Promise<FlushOutcome> {
  const { rows } = await db.query<{ applied: boolean; reset_since: string[] }>(FLUSH_BATCH, [
    batch.batchId,
    batch.replicaId,
    batch.requests,
    batch.items.map((i) => i.keyId),
    batch.items.map((i) => i.generation),
    batch.items.map((i) => i.cost),
  ]);
  const row = rows[0]!;
  return {
    applied: row.applied,
    resetSince: row.reset_since.map((s) => {
      const [keyId, generation] = s.split(":") as [string, string];
      return { keyId, generation };
    }),
  };
}

export async function readDurableSpend(db: Queryable, keyId: string): Promise<{ spend: number; generation: string } | null> {
  const { rows } = await db.query<{ spend: number; spend_generation: number }>("SELECT spend, spend_generation FROM gh_keys WHERE key_id = $1", [keyId]);
  return rows[0] ? { spend: rows[0].spend, generation: String(rows[0].spend_generation) } : null;
}

export interface DueBudget {
  token: string;
  keyId: string;
  budgetDuration: string;
  budgetResetAt: Date;
}

export async function findDueBudgets(db: Queryable, limit: number): Promise<DueBudget[]> {
  const { rows } = await db.query<{ token: string; key_id: string; budget_duration: string; budget_reset_at: Date }>(
    "SELECT token, key_id, budget_duration, budget_reset_at FROM gh_keys WHERE budget_reset_at <= now() AND budget_duration IS NOT NULL ORDER BY budget_reset_at LIMIT $1",
    [limit],
  );
  return rows.map((r) => ({ token: r.token, keyId: r.key_id, budgetDuration: r.budget_duration, budgetResetAt: r.budget_reset_at }));
}

/**
 * Starts a new budget period for one key: the next reset is the first multiple of the duration after
 * now, counted from the last reset time, so a sweeper that ran late does not shift later periods.
 * Spend goes to 0 in a new generation. Guarded by "the period has ended" re-checked on
 * the locked row, so two replicas' sweepers reset a period once. Returns the new generation, or null
 * when another replica did it first (or when `durationMs` is not above zero: nothing to divide by).
 */
export async function resetBudgetPeriod(db: Queryable, keyId: string, durationMs: number): Promise<string | null> {
  const { rows } = await db.query<{ spend_generation: number }>(
    `UPDATE gh_keys SET spend = 0, spend_generation = spend_generation + 1,
       budget_reset_at = budget_reset_at + (floor(extract(epoch FROM (now() - budget_reset_at)) * 1000 / $2::float8) + 1) * $2::float8 * interval '1 millisecond'
     WHERE key_id = $1 AND budget_reset_at <= now() AND $2::float8 > 0
     RETURNING spend_generation`,
    [keyId, durationMs],
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
