import { createHash, randomUUID } from "node:crypto";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { flushSpendBatch, pruneSpendBatches, type SpendBatch } from "../src/store/spend-store.js";
import { createMigratedDatabase, waitFor } from "./helpers/services.js";

/**
 * A replica flushes its charges in batches and retries a batch until one attempt's answer arrives. When the answer
 * of an attempt that committed is lost (the connection dies during COMMIT), the retry finds the batch applied and
 * charges nothing. A soft budget that first attempt took across must still be told: the retry is the only answer the
 * replica ever gets for that batch.
 */
describe("a spend batch retried after its COMMIT's answer was lost", () => {
  let database: Awaited<ReturnType<typeof createMigratedDatabase>>;
  let pool: pg.Pool;

  beforeAll(async () => {
    database = await createMigratedDatabase();
    pool = database.pool;
  });
  afterAll(async () => {
    await database?.close();
  });

  async function keyWithSoftBudget(softBudget: number): Promise<string> {
    const { rows } = await pool.query<{ key_id: string }>("INSERT INTO gh_keys (token, key_name, soft_budget, max_budget) VALUES ($1, 'sk-...test', $2, 10) RETURNING key_id", [
      createHash("sha256").update(randomUUID()).digest("hex"),
      softBudget,
    ]);
    return rows[0]!.key_id;
  }
  const batchOf = (keyId: string, cost: number): SpendBatch => ({
    batchId: randomUUID(),
    replicaId: "replica-a",
    requests: 1,
    items: [{ level: "key", id: keyId, generation: 0, cost }],
  });

  it("is charged once and told the soft budget its first attempt crossed", async () => {
    const keyId = await keyWithSoftBudget(1);
    const batch = batchOf(keyId, 1.5);
    const first = await flushSpendBatch(pool, batch);
    expect(first.applied).toBe(true);
    expect(first.softBudgetCrossed).toEqual([expect.objectContaining({ level: "key", key_id: keyId, spend: 1.5, soft_budget: 1 })]);

    // The retry of the same batch: nothing charged again, the same crossing told.
    const retry = await flushSpendBatch(pool, batch);
    expect(retry.applied).toBe(false);
    expect(retry.softBudgetCrossed).toEqual(first.softBudgetCrossed);
    expect((await pool.query("SELECT spend FROM gh_keys WHERE key_id = $1", [keyId])).rows[0].spend).toBe(1.5);
  });

  it("a retry sent while the first attempt still runs is told what that attempt crossed once it commits", async () => {
    const keyId = await keyWithSoftBudget(1);
    const batch = batchOf(keyId, 1.5);
    // The first attempt, its client gone as far as the replica knows, still in its transaction on the server.
    const first = new pg.Client({ connectionString: database.db.url });
    await first.connect();
    try {
      await first.query("BEGIN");
      expect((await flushSpendBatch(first, batch)).softBudgetCrossed).toHaveLength(1);
      const retry = flushSpendBatch(pool, batch);
      await waitFor(async () => (await pool.query("SELECT 1 FROM pg_locks WHERE NOT granted")).rows.length > 0, { what: "the retry to wait on the batch row" });
      await first.query("COMMIT");
      const told = await retry;
      expect(told.applied).toBe(false);
      expect(told.softBudgetCrossed).toEqual([expect.objectContaining({ key_id: keyId, spend: 1.5 })]);
    } finally {
      await first.end();
    }
  });

  it("a batch that crossed nothing keeps nothing, and its retry tells nothing", async () => {
    const keyId = await keyWithSoftBudget(5);
    const batch = batchOf(keyId, 1);
    expect((await flushSpendBatch(pool, batch)).softBudgetCrossed).toEqual([]);
    expect((await flushSpendBatch(pool, batch)).softBudgetCrossed).toEqual([]);
    expect((await pool.query("SELECT count(*)::int AS n FROM gh_spend_batch_crossings WHERE batch_id = $1", [batch.batchId])).rows[0].n).toBe(0);
  });

  it("the crossings kept go when their batch is pruned", async () => {
    const keyId = await keyWithSoftBudget(1);
    const batch = batchOf(keyId, 2);
    await flushSpendBatch(pool, batch);
    expect((await pool.query("SELECT count(*)::int AS n FROM gh_spend_batch_crossings WHERE batch_id = $1", [batch.batchId])).rows[0].n).toBe(1);
    // The sweeper's prune, with the batch made old enough for it.
    await pool.query("UPDATE gh_spend_batches SET flushed_at = now() - interval '1 day' WHERE batch_id = $1", [batch.batchId]);
    expect(await pruneSpendBatches(pool, 60_000)).toBeGreaterThanOrEqual(1);
    expect((await pool.query("SELECT count(*)::int AS n FROM gh_spend_batch_crossings WHERE batch_id = $1", [batch.batchId])).rows[0].n).toBe(0);
  });
});
