import { hostname } from "node:os";
import type { Logger } from "../logger.js";
import type { Database } from "../store/database.js";
import { latestEventId } from "../store/event-store.js";
import { listReplicas, removeReplica, SILENT_REPLICA_FORGOTTEN_MS, writeReplicaHeartbeat } from "../store/replica-store.js";
import { Periodic } from "../timers/periodic.js";

/**
 * Every replica registers itself and writes a heartbeat every `intervalMs` (gh_replicas): what it last applied,
 * its listener, its propagation lags and breakers — what the admin UI's cluster page shows. A failed write is
 * routine while Postgres is away (the page then shows the heartbeat growing old, which is the point).
 */
export class ReplicaHeartbeat {
  private readonly loop: Periodic;
  private readonly startedAt = new Date();

  constructor(
    private readonly o: {
      db: Database;
      logger: Logger;
      replicaId: string;
      version: string;
      intervalMs: number;
      /** This replica's state now (coherence status, breakers, workers): stored as given. */
      status: () => Record<string, unknown>;
    },
  ) {
    this.loop = new Periodic({
      logger: o.logger,
      intervalMs: o.intervalMs,
      pass: () => this.beat(),
      failureMessage: "could not write this replica's heartbeat",
      failureLevel: "debug",
    });
  }

  start(): void {
    this.loop.start({ now: true });
  }

  /** Stops beating and removes this replica's row, so the cluster page shows it gone at once, not by silence. */
  async stop(): Promise<void> {
    await this.loop.stop();
    await this.o.db.query((q) => removeReplica(q, this.o.replicaId)).catch(() => {});
  }

  async beat(): Promise<void> {
    const { replicaId, version } = this.o;
    // The newest id first, this replica's state second: whatever it reports applied was committed by then, so
    // "behind" never counts an event committed after the status was taken.
    const latest = await this.o.db.query(latestEventId);
    const status = this.o.status();
    await this.o.db.query((q) => writeReplicaHeartbeat(q, { replicaId, host: hostname(), pid: process.pid, version, startedAt: this.startedAt, latestEventId: latest, status }));
  }
}

/** The cluster as the registry shows it, for the admin UI (GET /ui/api/cluster). */
export async function readCluster(db: Database, heartbeatIntervalMs: number) {
  const { replicas, latestEventId } = await db.query(listReplicas);
  return {
    latest_event_id: latestEventId,
    heartbeat_interval_ms: heartbeatIntervalMs,
    // A replica silent this long is no longer listed (and the sweeper deletes its row).
    forget_after_ms: SILENT_REPLICA_FORGOTTEN_MS,
    replicas: replicas.map((r) => {
      const applied = Number(r.status.last_applied_event_id ?? 0);
      return {
        ...r.status,
        replica_id: r.replica_id,
        host: r.host,
        pid: r.pid,
        version: r.version,
        started_at: r.started_at,
        heartbeat_age_ms: Math.round(r.heartbeat_age_ms),
        // Three missed heartbeats: the replica is gone or cut off from Postgres. What it reported before (listener,
        // breakers) is its last word, not its state now.
        alive: r.heartbeat_age_ms < heartbeatIntervalMs * 3,
        // Behind what the database held when this heartbeat was written (not now: that would count events
        // committed since, which no replica could have applied yet).
        behind_events: Math.max(0, r.latest_event_id - applied),
      };
    }),
  };
}
