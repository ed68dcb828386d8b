import type { Queryable } from "./db.js";

const COUNT_LISTENERS = `
SELECT count(*)::int AS n FROM pg_stat_activity
WHERE datname = current_database() AND application_name LIKE 'gatehouse-listen:%'`;

/**
 * The live replicas, as Postgres sees them: every replica holds one LISTEN connection whose application_name
 * is `gatehouse-listen:<replica id>` (coherence/coherence.ts), so pg_stat_activity knows who is alive
 * without a registry table or any writes.
 */
export async function countLiveReplicas(db: Queryable): Promise<number> {
  return (await db.query<{ n: number }>(COUNT_LISTENERS)).rows[0]!.n;
}
