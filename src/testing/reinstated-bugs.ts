/**
 * Test builds only: switches that bring back known bugs — a delete racing a rotation, a token in grace not addressable,
 * L2 trusted after Redis lost data, reads joined across an invalidation, stale team and model records, blindness to a
 * database failover, ledgers trusted after a Redis failover, per-replica router state — so the
 * history checker in chaos/ can prove that it catches each of them (docs/coherence.md, "The checker checks
 * itself"). Read once, from GATEHOUSE_TEST_REINSTATE_BUGS (comma-separated names); nothing sets it outside
 * the test harness, and a replica started with it logs a warning naming every bug it brought back.
 *
 * This module is the one seam: production code asks `reinstated(name)` where the old behaviour would differ (grep
 * for it), and nothing else reads the switch. A bug that is a condition lives at that one call; a bug with code of
 * its own keeps it, with its SQL, in src/reinstated-bugs/ (`delete-race`: reinstated-bugs/delete-race.ts), which
 * only the call that asks for it imports.
 *
 * - `delete-race`: /key/delete matches rows by token without locking them, so a delete racing a
 *   regenerate of the same key answers 200 and deletes nothing.
 * - `grace-404`: admin operations address only a key's current token; a token in grace is "not found".
 * - `l2-rewind`: L2 is trusted whatever Redis lost or restored (no state cursor, no repair).
 * - `joined-fill`: a request may join a database read that began before an invalidation, and a fill an
 *   invalidation cancelled is still answered from.
 * - `team-stale`: a team's change commits its event, but replicas do not evict the team's cached record, so
 *   the team's keys follow the old team state until the record leaves the cache.
 * - `model-stale`: a model added, updated or deleted through the API commits its event, but replicas keep the
 *   database models they read at start (LiteLLM's instances keep serving a deleted model).
 * - `lineage-blind`: replicas do not notice that the database answering is another history (a standby promoted
 *   after missing the last commits): event ids it issues again are dropped as already applied, and L2 keeps the
 *   lost history's records and cursor.
 * - `ledger-rewind`: a limits ledger is trusted whatever Redis server it came from, so a failover to a replica
 *   that lagged rewinds spend (the ledger is not re-seeded from Postgres).
 * - `router-local`: each replica counts a deployment's failures and keeps its cooldowns alone (LiteLLM's per-pod
 *   router state): a dead deployment keeps being called by the replicas that have not seen enough failures yet.
 */
export const REINSTATABLE_BUGS = ["delete-race", "grace-404", "l2-rewind", "joined-fill", "team-stale", "model-stale", "lineage-blind", "ledger-rewind", "router-local"] as const;
export type ReinstatedBug = (typeof REINSTATABLE_BUGS)[number];

const requested = new Set(
  (process.env.GATEHOUSE_TEST_REINSTATE_BUGS ?? "")
    .split(",")
    .map((s) => s.trim())
    .filter((s): s is ReinstatedBug => (REINSTATABLE_BUGS as readonly string[]).includes(s)),
);

export function reinstated(bug: ReinstatedBug): boolean {
  return requested.size > 0 && requested.has(bug);
}

export function reinstatedBugs(): ReinstatedBug[] {
  return [...requested];
}
