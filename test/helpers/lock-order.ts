import type pg from "pg";
import type { Cluster, Replica } from "./cluster.js";
import { waitFor } from "./services.js";

/**
 * For tests of the order in which changes take their row locks: a key's row held by the test, so that the
 * changes sent meanwhile queue behind it in a known order, and what each replica met of Postgres's contention.
 */

/** Deadlocks and serialization failures a replica met so far (gatehouse_postgres_recoveries_total{kind="conflict"}). */
export async function conflictsMet(replica: Replica): Promise<number> {
  const text = (await replica.admin("/metrics")).text;
  const m = /^gatehouse_postgres_recoveries_total\{kind="conflict"\} (\d+)/m.exec(text);
  return m ? Number(m[1]) : 0;
}

/** A key's row locked FOR UPDATE by a transaction of the test's own, until release(). */
export async function holdKeyRow(cluster: Cluster, keyId: string): Promise<{ release: () => Promise<void> }> {
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
export async function waitForLockWaiters(cluster: Cluster, n: number): Promise<void> {
  await waitFor(
    async () => {
      const { rows } = await cluster.pool.query<{ n: number }>("SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'");
      return rows[0]!.n >= n;
    },
    { timeoutMs: 5_000, intervalMs: 10, what: `${n} sessions waiting on a lock` },
  );
}
