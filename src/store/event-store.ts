import type { Queryable } from "./db.js";

/**
 * The only module that writes `gh_key_events`, `gh_event_watermark` and `gh_lineage`, and the only one that NOTIFYs.
 * An event names the token hashes whose cached records went stale and the version to tombstone them at.
 */

export const EVENTS_CHANNEL = "gatehouse_key_events";

export type EventKind =
  | "generate"
  | "update"
  | "delete"
  | "block"
  | "unblock"
  | "regenerate"
  | "expiry"
  | "end_grace"
  | "team_update"
  | "team_block"
  | "team_unblock"
  | "team_delete"
  | "team_new"
  | "user_new"
  | "user_update"
  | "user_delete"
  | "model_change"
  | "import";

export interface KeyEvent {
  id: number;
  kind: EventKind;
  tokens: string[];
  version: number;
  /** Commit-time wall clock of the database, in ms since the epoch: the start of the propagation clock. */
  at: number;
}

// Any fixed 64-bit number; held to COMMIT so event ids become visible in id order.
const EVENT_ORDER_LOCK = "7326431905118244";
// NOTIFY payloads must stay under 8000 bytes; past this many tokens replicas fetch the row instead.
const MAX_TOKENS_IN_PAYLOAD = 60;

const APPEND_EVENT = `
WITH ordered AS (SELECT pg_advisory_xact_lock(${EVENT_ORDER_LOCK}::bigint)),
ins AS (
  INSERT INTO gh_key_events (kind, tokens, version, change_id)
  SELECT $1, $2::text[], $3, $4 FROM ordered
  RETURNING id, kind, tokens, version, (extract(epoch FROM created_at) * 1000)::float8 AS at
)
SELECT ins.*, pg_notify('${EVENTS_CHANNEL}',
  json_build_object('id', ins.id, 'k', ins.kind, 'v', ins.version, 'at', ins.at,
    't', CASE WHEN cardinality(ins.tokens) <= ${MAX_TOKENS_IN_PAYLOAD} THEN to_json(ins.tokens) END)::text) AS notified
FROM ins`;

/**
 * Which history of the database answers (docs/coherence.md, "Engine failover"): the server's system identifier
 * (a new cluster, a dump restored elsewhere), its WAL timeline (every promotion of a standby starts a new one,
 * whether or not it lost commits; `pg_walfile_name` names the timeline the server writes on now, where the last
 * checkpoint's may still be the old one) and Gatehouse's own token (`gh_lineage`, renewed on demand). On a
 * server in recovery `pg_current_wal_lsn()` fails: a read-only standby has no lineage to offer writes on.
 */
const LINEAGE = `(SELECT system_identifier::text FROM pg_control_system()) || ':' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8) || ':' || (SELECT token::text FROM gh_lineage)`;

// db_now: the database clock, read by every catch-up for the replica's clock (coherence/db-clock.ts).
// lineage and latest come from the same statement as the page (one snapshot, one server): a pool whose
// connections straddle a failover cannot pair one server's events with another's lineage.
// The one-row tables are read as scalar subqueries, never joined: a join made the planner multiply its guess of
// their size (it assumes about 2,000 rows for a table it has not analyzed) by the page, and once the event table
// passed a thousand rows the estimate crossed Postgres's JIT thresholds: every catch-up then spent a second or
// more compiling itself, the replica's catch-ups fell behind its freshness bound, and it stopped vouching for
// what it served. Kept far below jit_above_cost; a test holds it there.
const EVENTS_AFTER = `
SELECT (SELECT pruned_through FROM gh_event_watermark) AS pruned_through,
  (extract(epoch FROM clock_timestamp()) * 1000)::float8 AS db_now,
  ${LINEAGE} AS lineage,
  GREATEST((SELECT COALESCE(max(id), 0) FROM gh_key_events), (SELECT pruned_through FROM gh_event_watermark))::int8 AS latest,
  e.id, e.kind, e.tokens, e.version, (extract(epoch FROM e.created_at) * 1000)::float8 AS at
FROM (VALUES (1)) AS one (row)
LEFT JOIN LATERAL (SELECT * FROM gh_key_events WHERE id > $1 ORDER BY id LIMIT $2) e ON true
ORDER BY e.id`;

/** The catch-up statement, for the test that keeps its planned cost below Postgres's JIT threshold. */
export const EVENTS_AFTER_SQL = EVENTS_AFTER;

// Pruning may have removed every event; the watermark still says how far ids went.
const LATEST_EVENT_ID = "SELECT GREATEST((SELECT COALESCE(max(id), 0) FROM gh_key_events), (SELECT pruned_through FROM gh_event_watermark))::int8 AS id";

const PRUNE_EVENTS = `
WITH gone AS (DELETE FROM gh_key_events WHERE created_at < now() - $1::bigint * interval '1 millisecond' RETURNING id)
UPDATE gh_event_watermark SET pruned_through = GREATEST(pruned_through, (SELECT max(id) FROM gone))
WHERE EXISTS (SELECT 1 FROM gone)
RETURNING pruned_through`;

const CHANGE_COMMITTED = "SELECT EXISTS (SELECT 1 FROM gh_key_events WHERE change_id = $1) AS landed";

/** Appends an event inside the caller's transaction; the NOTIFY is delivered when that transaction commits. */
export async function appendEvent(tx: Queryable, kind: EventKind, tokens: string[], version: number, changeId: string): Promise<KeyEvent> {
  const { rows } = await tx.query<KeyEvent>(APPEND_EVENT, [kind, tokens, version, changeId]);
  const row = rows[0]!;
  return { id: row.id, kind: row.kind, tokens: row.tokens, version: row.version, at: row.at };
}

/** Did the transaction that appended the event with this change id commit? */
export async function changeCommitted(db: Queryable, changeId: string): Promise<boolean> {
  return (await db.query<{ landed: boolean }>(CHANGE_COMMITTED, [changeId])).rows[0]!.landed;
}

export interface EventPage {
  prunedThrough: number;
  events: KeyEvent[];
  /** The database's clock when it answered (ms since the epoch). */
  dbNow: number;
  /** The history this page belongs to: system identifier, timeline and lineage token (see LINEAGE). */
  lineage: string;
  /** The newest event id this database has issued (pruned ones included). */
  latestId: number;
}

export async function readEventsAfter(db: Queryable, lastId: number, limit: number): Promise<EventPage> {
  const { rows } = await db.query<{
    pruned_through: number;
    db_now: number;
    lineage: string;
    latest: number;
    id: number | null;
    kind: EventKind;
    tokens: string[];
    version: number;
    at: number;
  }>(EVENTS_AFTER, [lastId, limit]);
  const first = rows[0];
  if (!first) throw new Error("gh_event_watermark has no row: the database is not migrated");
  const events = rows.filter((r) => r.id !== null).map((r) => ({ id: r.id!, kind: r.kind, tokens: r.tokens, version: r.version, at: r.at }));
  return { prunedThrough: first.pruned_through, events, dbNow: first.db_now, lineage: first.lineage, latestId: first.latest };
}

const RENEW_LINEAGE = "UPDATE gh_lineage SET token = gen_random_uuid(), renewed_at = now() RETURNING token::text AS token";

/** Starts a new lineage token: every replica treats the database as a new history (a restored backup). */
export async function renewLineage(db: Queryable): Promise<string> {
  return (await db.query<{ token: string }>(RENEW_LINEAGE)).rows[0]!.token;
}

export async function latestEventId(db: Queryable): Promise<number> {
  return (await db.query<{ id: number }>(LATEST_EVENT_ID)).rows[0]!.id;
}

/** Deletes events older than `retentionMs` and raises the watermark; safe to run on every replica. */
export async function pruneEvents(db: Queryable, retentionMs: number): Promise<number | null> {
  const { rows } = await db.query<{ pruned_through: number }>(PRUNE_EVENTS, [retentionMs]);
  return rows[0]?.pruned_through ?? null;
}

/** Parses a NOTIFY payload written by APPEND_EVENT; tokens are absent when there were too many. */
export function parseEventPayload(payload: unknown, now: () => number = Date.now): { id: number; kind: EventKind; version: number; at: number; tokens: string[] | null } | null {
  if (!payload || typeof payload !== "object") return null;
  const p = payload as { id?: unknown; k?: unknown; v?: unknown; at?: unknown; t?: unknown };
  if (typeof p.id !== "number" || typeof p.v !== "number") return null;
  return { id: p.id, kind: p.k as EventKind, version: p.v, at: typeof p.at === "number" ? p.at : now(), tokens: Array.isArray(p.t) ? (p.t as string[]) : null };
}
