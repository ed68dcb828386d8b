import type pg from "pg";
import type { ApiResponse } from "./http.js";
import type { Cluster, Replica } from "./cluster.js";
import { waitFor } from "./services.js";

/**
 * For tests of the order in which changes take their row locks: a key's change and its owner's delete made to meet
 * in a known order, and what the replicas met of Postgres's contention meanwhile.
 */

/**
 * `/key/update` of the key's models on `changer`, then `deletion` (its owner's delete) on `deleter`, both queued
 * behind the key's row, which the test holds until both wait; then released. The change's transaction locks the key
 * first and then its owner; the delete's, the owner's rows in whatever order it takes them.
 */
export async function keyChangeMeetsOwnerDelete(
  cluster: Cluster,
  key: { key: string; key_id: string },
  changer: Replica,
  deleter: Replica,
  deletion: { path: string; body: unknown },
): Promise<{ update: ApiResponse; deletion: ApiResponse; conflicts: number }> {
  const before = (await conflictsMet(changer)) + (await conflictsMet(deleter));
  const held = await holdKeyRow(cluster, key.key_id);
  const update = changer.admin("/key/update", { key: key.key, models: ["mock-gpt"] });
  await waitForLockWaiters(cluster, 1);
  const deleted = deleter.admin(deletion.path, deletion.body);
  await waitForLockWaiters(cluster, 2);
  await held.release();
  const answers = { update: await update, deletion: await deleted };
  return { ...answers, conflicts: (await conflictsMet(changer)) + (await conflictsMet(deleter)) - before };
}

/** Deadlocks and serialization failures a replica met so far (gatehouse_postgres_recoveries_total{kind="conflict"}). */
async function conflictsMet(replica: Replica): Promise<number> {
  const text = (await replica.admin("/metrics")).text;
  const m = /^gatehouse_postgres_recoveries_total\{kind="conflict"\} (\d+)/m.exec(text);
  return m ? Number(m[1]) : 0;
}

/** A key's row locked FOR UPDATE by a transaction of the test's own, until release(). */
async function holdKeyRow(cluster: Cluster, keyId: string): Promise<{ release: () => Promise<void> }> {
  const client: pg.PoolClient = await cluster.pool.connect();
  await client.query("BEGIN");
  await client.query("SELECT 1 FROM gh_keys WHERE key_id = $1 FOR UPDATE", [keyId]);
  return {
    async release() {
      await client.query("COMMIT");
      client.release();
    },
  };
}

/** Waits until `n` sessions of the test's database wait on a lock (the changes sent are queued where expected). */
async function waitForLockWaiters(cluster: Cluster, n: number): Promise<void> {
  await waitFor(
    async () => {
      const { rows } = await cluster.pool.query<{ n: number }>("SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'");
      return rows[0]!.n >= n;
    },
    { timeoutMs: 5_000, intervalMs: 10, what: `${n} sessions waiting on a lock` },
  );
}
