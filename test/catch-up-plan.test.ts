import type pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EVENTS_AFTER_SQL, readEventsAfter } from "../src/store/event-store.js";
import { createMigratedDatabase } from "./helpers/services.js";

/**
 * Every replica reads the event table once a heartbeat (its catch-up) and pages through it after each Redis
 * restart (the L2 repair). With 20,000 events in the table that statement must stay an index read: once its
 * planned cost passes Postgres's jit_above_cost, each execution compiles itself first (seconds of CPU on a busy
 * server), catch-ups fall behind the freshness bound and replicas stop vouching for what they serve. The one-row
 * tables are left unanalyzed, as a fresh deployment has them (Postgres then guesses a couple of thousand rows).
 */
describe("the catch-up statement stays cheap as the event table grows", () => {
  let database: Awaited<ReturnType<typeof createMigratedDatabase>>;
  let pool: pg.Pool;

  beforeAll(async () => {
    database = await createMigratedDatabase();
    pool = database.pool;
    await pool.query("INSERT INTO gh_key_events (kind, tokens, version) SELECT 'block', ARRAY[md5(g::text), md5((g + 1)::text)], g FROM generate_series(1, 20000) g");
    await pool.query("ANALYZE gh_key_events"); // what autovacuum does after such growth
  });
  afterAll(async () => {
    await database?.close();
  });

  it.each([
    ["a replica replaying from the start (a full page)", 0],
    ["a replica that is up to date (an empty page)", 20_000],
  ])("%s: planned below jit_above_cost, and run without JIT", async (_what, after) => {
    const jitAboveCost = Number((await pool.query<{ jit_above_cost: string }>("SHOW jit_above_cost")).rows[0]!.jit_above_cost);
    const planned = (await pool.query<{ "QUERY PLAN": Array<{ Plan: { "Total Cost": number } }> }>(`EXPLAIN (FORMAT JSON) ${EVENTS_AFTER_SQL}`, [after, 1_000])).rows[0]!;
    const cost = planned["QUERY PLAN"][0]!.Plan["Total Cost"];
    expect(cost).toBeLessThan(jitAboveCost / 100);

    // Run for real with JIT forced on for every statement that qualifies: none of it is compiled.
    const client = await pool.connect();
    try {
      await client.query("SET jit = on");
      const analyzed = (await client.query<{ "QUERY PLAN": string }>(`EXPLAIN (ANALYZE, FORMAT TEXT) ${EVENTS_AFTER_SQL}`, [after, 1_000])).rows.map((r) => r["QUERY PLAN"]);
      expect(analyzed.filter((line) => line.startsWith("JIT:"))).toEqual([]);
    } finally {
      client.release();
    }

    const page = await readEventsAfter(pool, after, 1_000);
    expect(page.events.length).toBe(after === 0 ? 1_000 : 0);
    expect(page.latestId).toBe(20_000);
  });
});
