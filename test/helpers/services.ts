import pg from "pg";
import { migrate } from "../../src/store/migrator.js";
import { createTestDatabase, type TestDatabase } from "../support/services.mjs";

export { createRedisNamespace, createTestDatabase, POSTGRES_ADMIN_URL, REDIS_URL } from "../support/services.mjs";
export type { RedisNamespace, TestDatabase } from "../support/services.mjs";

/** Polls `condition` until it holds or the deadline passes; never a bare sleep. */
export async function waitFor<T>(
  condition: () => Promise<T | undefined | false> | T | undefined | false,
  options: { timeoutMs?: number; intervalMs?: number; what?: string } = {},
): Promise<T> {
  const deadline = Date.now() + (options.timeoutMs ?? 5_000);
  let last: unknown;
  for (;;) {
    try {
      const value = await condition();
      if (value !== undefined && value !== false) return value as T;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${options.what ?? "condition"}${last ? `: ${(last as Error).message}` : ""}`);
    await new Promise((r) => setTimeout(r, options.intervalMs ?? 20));
  }
}

/** A test database of its own with every migration applied, and a small pool on it; `close` ends both. */
export async function createMigratedDatabase(): Promise<{ db: TestDatabase; pool: pg.Pool; close: () => Promise<void> }> {
  const db = await createTestDatabase();
  const pool = new pg.Pool({ connectionString: db.url, max: 2 });
  await migrate(pool);
  return {
    db,
    pool,
    close: async () => {
      await pool.end();
      await db.drop();
    },
  };
}
