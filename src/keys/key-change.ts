import type pg from "pg";
import { withTransaction } from "../store/db.js";
import { appendEvent, type EventKind, type KeyEvent } from "../store/event-store.js";

/** Told about every committed event right after COMMIT (the writer's own replica applies it at once). */
export interface CommittedEventSink {
  applyCommitted(event: KeyEvent): Promise<void>;
}

export interface ChangeOutcome<T> {
  result: T;
  /** What went stale: token hashes and the version to tombstone them at. Null when nothing changed. */
  stale: { kind: EventKind; tokens: string[]; version: number } | null;
}

/**
 * Runs `work` and appends its invalidation event in one transaction (COHERENCE.md #3, #6): the change and
 * the event commit together or not at all, and the NOTIFY goes out only on commit. Then this replica's
 * caches are updated before the caller answers.
 */
export async function commitKeyChange<T>(pool: pg.Pool, sink: CommittedEventSink, work: (tx: pg.PoolClient) => Promise<ChangeOutcome<T>>): Promise<T> {
  const { result, event } = await withTransaction(pool, async (tx) => {
    const outcome = await work(tx);
    const stale = outcome.stale;
    const event = stale ? await appendEvent(tx, stale.kind, [...new Set(stale.tokens)], stale.version) : null;
    return { result: outcome.result, event };
  });
  if (event) await sink.applyCommitted(event);
  return result;
}
