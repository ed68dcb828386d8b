import { randomUUID } from "node:crypto";
import type pg from "pg";
import type { Database } from "../store/database.js";
import { appendEvent, changeCommitted, type EventKind, type KeyEvent } from "../store/event-store.js";

/**
 * The ids of the events one admin request committed, in commit order, so the HTTP layer can name them in its
 * answer (`Gatehouse-Event-Id`): event ids are the cluster's order of changes, and a client, the history
 * checker or an operator can tell exactly where a change sits among everyone else's. Passed explicitly (not
 * through AsyncLocalStorage, whose promise hooks would tax every request of the process).
 */
export interface ChangeLog {
  eventIds: number[];
}

/** Told about every committed event right after COMMIT (the writer's own replica applies it at once). */
export interface CommittedEventSink {
  applyCommitted(event: KeyEvent): Promise<void>;
}

export type ChangeOutcome<T> = {
  /** What went stale: token hashes and the version to tombstone them at. Null when nothing changed. */
  stale: { kind: EventKind; tokens: string[]; version: number } | null;
} & ({ result: T; finalize?: undefined } | { result?: undefined; finalize: FinalizeChange<T> });

export type FinalizeChange<T> =
  /**
   * Runs after the event is appended, as the last work before COMMIT (the event-order lock is held, so it
   * should be short), and gives the final result. For values that must be taken as close to the commit as
   * possible: a grace period starts at the commit, not before the waits of the transaction.
   */
  (tx: pg.PoolClient) => Promise<T>;

/**
 * The write side of coherence: every change the admin API or the sweeper makes to a key, team, user or model
 * commits through here, so each commits with its event (the read side, applying events, is coherence.ts and
 * cache-invalidator.ts).
 *
 * Runs `work` and appends its invalidation event in one transaction (docs/coherence.md #3, #6): the change and
 * the event commit together or not at all, and the NOTIFY goes out only on commit. The event carries a
 * change id chosen here, so a COMMIT cut off mid-way is resolved by looking for it (Database.transaction).
 * Then this replica's caches are updated before the caller answers.
 */
export async function commitChangeWithEvent<T>(db: Database, sink: CommittedEventSink, work: (tx: pg.PoolClient) => Promise<ChangeOutcome<T>>, log?: ChangeLog): Promise<T> {
  const changeId = randomUUID();
  const { result, event } = await db.transaction(
    async (tx) => {
      const outcome = await work(tx);
      const stale = outcome.stale;
      const event = stale ? await appendEvent(tx, stale.kind, [...new Set(stale.tokens)], stale.version, changeId) : null;
      const result = outcome.finalize ? await outcome.finalize(tx) : (outcome.result as T);
      return { result, event };
    },
    // A transaction without an event wrote nothing, so "not found" is right for it too: it is simply re-run.
    { verifyCommitted: () => changeCommitted(db.pool, changeId) },
  );
  if (event) {
    log?.eventIds.push(event.id);
    await sink.applyCommitted(event);
  }
  return result;
}
