import { randomUUID } from "node:crypto";
import { teamCacheKey, userCacheKey } from "../auth/auth-record.js";
import type { Queryable } from "../store/db.js";
import { appendEvent } from "../store/event-store.js";
import { nextKeyVersion } from "../store/key-store.js";
import { insertImportedKeys, insertImportedTeams, insertImportedUsers, readLiteLLM } from "../store/litellm-import-store.js";

export interface ImportReport {
  teams: { read: number; imported: number };
  users: { read: number; imported: number };
  keys: { read: number; imported: number; skipped: number };
  events: number;
}

// A replica may have cached "no such key" (or team, or user) for what is imported: every imported record is named
// in an event, this many to an event, so replicas forget those misses; a NOTIFY carries at most 60 names, a
// replica reads longer events from the table.
const NAMES_PER_EVENT = 1_000;

/**
 * `gatehouse import-litellm --from <LiteLLM database URL>`: teams, then users, then keys, in one transaction of
 * Gatehouse's database (all or nothing), with the events that make running replicas see them at once. Keys keep
 * their hashes (LiteLLM's and Gatehouse's are both sha256 hex), so clients keep their keys. Models are not
 * imported: LiteLLM seals their credentials with its own salt key; add them with /model/new (docs/litellm-migration.md).
 */
export async function importLiteLLM(source: Queryable, target: { transaction<T>(work: (tx: Queryable) => Promise<T>): Promise<T> }): Promise<ImportReport> {
  const data = await readLiteLLM(source);
  return target.transaction(async (tx) => {
    const teams = await insertImportedTeams(tx, data.teams);
    const users = await insertImportedUsers(tx, data.users);
    const keys = await insertImportedKeys(tx, data.keys);
    const names = [...teams.map(teamCacheKey), ...users.map(userCacheKey), ...keys];
    let events = 0;
    for (let i = 0; i < names.length; i += NAMES_PER_EVENT) {
      await appendEvent(tx, "import", names.slice(i, i + NAMES_PER_EVENT), await nextKeyVersion(tx), randomUUID());
      events++;
    }
    return {
      teams: { read: data.teams.length, imported: teams.length },
      users: { read: data.users.length, imported: users.length },
      keys: { read: data.keys.length, imported: keys.length, skipped: data.keys.length - keys.length },
      events,
    };
  });
}
