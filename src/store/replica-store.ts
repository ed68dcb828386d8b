import type { Queryable } from "./db.js";
import { latestEventId } from "./event-store.js";

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

// ── the replica registry (sql/0011_admin_ui.sql): owners upkeep/replica-heartbeat.ts (writes), the UI (reads) ──

export interface ReplicaHeartbeat {
  replicaId: string;
  host: string;
  pid: number;
  version: string;
  startedAt: Date;
  /** The newest event id in the database, read before `status` was taken. */
  latestEventId: number;
  status: Record<string, unknown>;
}

export interface ReplicaRow {
  replica_id: string;
  host: string;
  pid: number;
  version: string;
  started_at: Date;
  heartbeat_at: Date;
  latest_event_id: number;
  status: Record<string, unknown>;
  /** Milliseconds since the heartbeat, by the database's clock (no replica's clock is trusted here). */
  heartbeat_age_ms: number;
}

export async function writeReplicaHeartbeat(db: Queryable, h: ReplicaHeartbeat): Promise<void> {
  await db.query(
    `INSERT INTO gh_replicas (replica_id, host, pid, version, started_at, heartbeat_at, latest_event_id, status)
     VALUES ($1, $2, $3, $4, $5, now(), $7, $6)
     ON CONFLICT (replica_id) DO UPDATE SET host = EXCLUDED.host, pid = EXCLUDED.pid, version = EXCLUDED.version,
       started_at = EXCLUDED.started_at, heartbeat_at = EXCLUDED.heartbeat_at, latest_event_id = EXCLUDED.latest_event_id,
       status = EXCLUDED.status`,
    [h.replicaId, h.host, h.pid, h.version, h.startedAt, JSON.stringify(h.status), h.latestEventId],
  );
}

/**
 * How long a replica that stopped beating (killed, never stopped; or cut off from Postgres) stays in the registry:
 * long enough for an operator to see on the cluster page that it died, and which one; short enough that the pods
 * of a few rolling restarts do not pile up there. One that comes back writes its row again.
 */
export const SILENT_REPLICA_FORGOTTEN_MS = 10 * 60_000;

/** Replicas silent for SILENT_REPLICA_FORGOTTEN_MS: the sweeper forgets them. */
export async function pruneSilentReplicas(db: Queryable): Promise<number> {
  return (await db.query("DELETE FROM gh_replicas WHERE heartbeat_at < now() - $1::bigint * interval '1 millisecond'", [SILENT_REPLICA_FORGOTTEN_MS])).rowCount ?? 0;
}

/** A replica that stops (SIGTERM) says so at once rather than by a missing heartbeat. */
export async function removeReplica(db: Queryable, replicaId: string): Promise<void> {
  await db.query("DELETE FROM gh_replicas WHERE replica_id = $1", [replicaId]);
}

/**
 * Every registered replica, with the newest event id now. A row the sweeper has not pruned yet but would (it runs
 * on its own interval) is left out: a replica is forgotten on time, whichever replica serves the page.
 */
export async function listReplicas(db: Queryable): Promise<{ replicas: ReplicaRow[]; latestEventId: number }> {
  const [replicas, latest] = await Promise.all([
    db.query<ReplicaRow>(
      `SELECT *, (extract(epoch FROM now() - heartbeat_at) * 1000)::float8 AS heartbeat_age_ms
       FROM gh_replicas WHERE heartbeat_at >= now() - $1::bigint * interval '1 millisecond' ORDER BY started_at, replica_id`,
      [SILENT_REPLICA_FORGOTTEN_MS],
    ),
    latestEventId(db),
  ]);
  return { replicas: replicas.rows, latestEventId: latest };
}
