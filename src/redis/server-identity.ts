import type { Redis } from "ioredis";

/**
 * Which Redis server the connection is talking to right now: its `run_id`, which every start of a server
 * process changes (a restart, a restore from a snapshot, a replica promoted by a failover or by Sentinel).
 *
 * Ledgers are stamped with the server they were last seeded on (redis/lua/limits-reserve.lua), so a ledger that
 * came from another server's history (replicated before a failover, or restored from a snapshot) is re-seeded
 * from Postgres before anything is admitted against it (docs/limits.md, "After Redis loses data").
 *
 * Known per connection: any change of server means a new connection, so the id is forgotten when the
 * connection closes and read again (INFO server) as the first command on the new one; a command sent before
 * that answer waits for it. Commands on one connection are answered in order, so the answer that names a
 * server always precedes the answers of commands stamped with it.
 */
export class RedisServerIdentity {
  private runId: string | null = null;
  private reading: Promise<string> | null = null;
  /** Moved on every close: a read begun on an older connection must not name the current one. */
  private connection = 0;

  constructor(private readonly redis: Redis) {
    redis.on("close", () => {
      this.connection++;
      this.runId = null;
      this.reading = null;
    });
    redis.on("ready", () => void this.read().catch(() => {}));
  }

  /** The run_id when already known for this connection (the hot path's way: no await). */
  get known(): string | null {
    return this.runId;
  }

  /** The run_id of the server on this connection; rejects when Redis does not answer. */
  read(): Promise<string> {
    if (this.runId !== null) return Promise.resolve(this.runId);
    if (this.reading) return this.reading;
    const connection = this.connection;
    const reading = this.redis.info("server").then((info) => {
      const runId = /run_id:(\w+)/.exec(info)?.[1];
      if (!runId) throw new Error("INFO server named no run_id");
      if (connection === this.connection) this.runId = runId;
      return runId;
    });
    this.reading = reading;
    const forget = () => {
      if (this.reading === reading) this.reading = null;
    };
    reading.then(forget, forget);
    return reading;
  }
}
