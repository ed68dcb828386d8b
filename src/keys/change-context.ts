import { AsyncLocalStorage } from "node:async_hooks";

/**
 * The ids of the events an admin request committed, so the HTTP layer can name them in the answer
 * (`Gatehouse-Event-Id`). Event ids are the cluster's commit order of changes: a client, the history checker
 * in chaos/, or an operator can tell exactly where a change it made sits among everyone else's.
 */
const committed = new AsyncLocalStorage<number[]>();

/** Runs `fn` (a request) collecting the event ids its changes commit. */
export function collectCommittedEvents<T>(fn: () => T): T {
  return committed.run([], fn);
}

export function noteCommittedEvent(id: number): void {
  committed.getStore()?.push(id);
}

export function committedEventIds(): readonly number[] {
  return committed.getStore() ?? [];
}
