import { createPool } from "./db.js";
import { locatedUrl } from "./primary-locator.js";
import { createHash } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import type pg from "pg";
import { migrationsDir } from "../paths.js";

/**
 * Applies the append-only `sql/NNNN_name.sql` files in order, each in its own transaction, recording
 * what ran. N replicas starting together serialise on one advisory lock, so each file runs once.
 */

// Any fixed 64-bit number works; this one spells nothing and collides with nothing we use.
const MIGRATION_LOCK_ID = 7_326_431_905_118_243n;
const FILE_PATTERN = /^(\d{4})_([a-z0-9_]+)\.sql$/;

interface MigrationFile {
  id: number;
  name: string;
  sql: string;
  checksum: string;
}

export function readMigrations(dir = migrationsDir): MigrationFile[] {
  return readdirSync(dir)
    .filter((f) => FILE_PATTERN.test(f))
    .sort()
    .map((file) => {
      const match = FILE_PATTERN.exec(file)!;
      const sql = readFileSync(path.join(dir, file), "utf8");
      return { id: Number(match[1]), name: match[2]!, sql, checksum: createHash("sha256").update(sql).digest("hex") };
    });
}

export async function migrate(pool: pg.Pool, dir = migrationsDir): Promise<string[]> {
  const migrations = readMigrations(dir);
  const client = await pool.connect();
  const applied: string[] = [];
  try {
    await client.query("SELECT pg_advisory_lock($1)", [MIGRATION_LOCK_ID.toString()]);
    await client.query(`CREATE TABLE IF NOT EXISTS gh_schema_migrations (
      id integer PRIMARY KEY, name text NOT NULL, checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`);
    const { rows } = await client.query<{ id: number; name: string; checksum: string }>("SELECT id, name, checksum FROM gh_schema_migrations");
    const done = new Map(rows.map((r) => [r.id, r]));
    for (const m of migrations) {
      const previous = done.get(m.id);
      if (previous) {
        if (previous.checksum !== m.checksum) {
          throw new Error(`migration ${m.id}_${m.name} was changed after it ran; migrations are append-only, add a new file instead`);
        }
        continue;
      }
      await client.query("BEGIN");
      try {
        await client.query(m.sql);
        await client.query("INSERT INTO gh_schema_migrations (id, name, checksum) VALUES ($1, $2, $3)", [m.id, m.name, m.checksum]);
        await client.query("COMMIT");
      } catch (err) {
        await client.query("ROLLBACK");
        throw new Error(`migration ${m.id}_${m.name} failed: ${(err as Error).message}`);
      }
      applied.push(`${String(m.id).padStart(4, "0")}_${m.name}`);
    }
    return applied;
  } finally {
    await client.query("SELECT pg_advisory_unlock($1)", [MIGRATION_LOCK_ID.toString()]).catch(() => {});
    client.release();
  }
}

/**
 * Migrates over a connection of its own to `directUrl` (not through a pooler), then closes it. With several
 * hosts, to the one found writable at start: the migration's session holds its lock on that server.
 */
const MIGRATION_TIMEOUT_MS = 10 * 60_000;

export async function migrateDirect(directUrl: string): Promise<string[]> {
  // A long bound, not the request path's 3 s: a migration may build an index over weeks of spend logs (it runs
  // once, under a lock); still bounded, so a start never hangs for good behind a lock nobody releases.
  const pool = createPool(await locatedUrl(directUrl), { max: 1, applicationName: "gatehouse-migrate", statementTimeoutMs: MIGRATION_TIMEOUT_MS });
  try {
    return await migrate(pool);
  } finally {
    await pool.end();
  }
}
