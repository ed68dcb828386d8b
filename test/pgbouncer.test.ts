import { readdirSync } from "node:fs";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startCluster, type Cluster, type Replica } from "./helpers/cluster.js";
import { waitFor } from "./helpers/services.js";
import { PGBOUNCER, startPgBouncer, type PgBouncer } from "./support/pgbouncer.mjs";

/**
 * Queries through PgBouncer in transaction pooling mode, LISTEN (and migrations) straight to
 * Postgres through DATABASE_LISTEN_URL. Two replicas share a pool of 4 server connections, so every
 * statement of theirs really is multiplexed. CI installs pgbouncer (.ci/run) and requires this test to run.
 */
const required = process.env.GATEHOUSE_REQUIRE_PGBOUNCER === "1";
if (!PGBOUNCER && required) throw new Error("pgbouncer is required here (GATEHOUSE_REQUIRE_PGBOUNCER=1) but not installed");

describe.skipIf(!PGBOUNCER)("behind PgBouncer (transaction pooling)", () => {
  let bouncer: PgBouncer;
  let cluster: Cluster;
  let A: Replica, B: Replica;

  beforeAll(async () => {
    bouncer = await startPgBouncer({ poolSize: 4 });
    cluster = await startCluster({
      size: 2,
      databaseUrl: (url) => bouncer.url(url),
      listenDirect: true,
      config: {
        model_list: [{ model_name: "priced", litellm_params: { model: "mock/priced", input_cost_per_token: 0.5, output_cost_per_token: 0.5 } }],
        gatehouse_settings: { limits: { flush_interval_ms: 100 } },
      },
    });
    [A, B] = cluster.replicas as [Replica, Replica];
  }, 60_000);
  afterAll(async () => {
    await cluster?.close();
    await bouncer?.stop();
  });

  async function transactionsThroughBouncer(): Promise<number> {
    const admin = new pg.Client({ connectionString: bouncer.adminUrl });
    await admin.connect();
    try {
      // The admin console speaks the simple query protocol only.
      const res = await admin.query({ text: "SHOW STATS", rowMode: "array" } as any).catch(async () => admin.query("SHOW STATS"));
      const fields = res.fields.map((f: any) => f.name);
      const db = new URL(cluster.db.url).pathname.slice(1);
      const row: any = (res.rows as any[]).map((r) => (Array.isArray(r) ? Object.fromEntries(fields.map((f: string, i: number) => [f, r[i]])) : r)).find((r) => r.database === db);
      return Number(row?.total_xact_count ?? 0);
    } finally {
      await admin.end();
    }
  }

  it("serves keys, rotations, propagation and spend with every query multiplexed through PgBouncer", async () => {
    const before = await transactionsThroughBouncer();
    const created = await A.admin("/key/generate", { rpm_limit: 1_000, max_budget: 100 });
    expect(created.status).toBe(200);
    await cluster.settle();
    expect(await B.chat(created.body.key, "priced")).toBe(200);

    // Concurrent rotations of distinct keys on both replicas: transactions with advisory locks, events, NOTIFY.
    const keys = await Promise.all(Array.from({ length: 20 }, (_, i) => [A, B][i % 2]!.admin("/key/generate", {})));
    const rotations = await Promise.all(
      keys.map((k, i) => [B, A][i % 2]!.admin(`/key/${k.body.key}/regenerate`, { grace_period: "1h" }, { headers: { "idempotency-key": `pgb-${i}` } })),
    );
    expect(rotations.map((r) => r.status)).toEqual(Array(20).fill(200));
    // Idempotent retry through the pooler returns the stored result.
    const again = await B.admin(`/key/${keys[0]!.body.key}/regenerate`, { grace_period: "1h" }, { headers: { "idempotency-key": "pgb-0" } });
    expect(again.body.key).toBe(rotations[0]!.body.key);

    // A block on A is seen by B through LISTEN on the direct connection.
    await cluster.settle();
    expect(await B.chat(rotations[1]!.body.key, "priced")).toBe(200);
    expect((await A.admin("/key/block", { key: rotations[1]!.body.key })).status).toBe(200);
    await waitFor(async () => (await B.chat(rotations[1]!.body.key, "priced")) === 401, { timeoutMs: 2_000, intervalMs: 10, what: "B to see the block" });

    // Spend flushes (one-statement batches) land through the pooler too.
    await waitFor(async () => (await cluster.pool.query("SELECT spend FROM gh_keys WHERE token = $1", [created.body.token])).rows[0].spend > 0, { what: "spend to be flushed" });
    // The old key is in its grace: it still names its key, and deleting it deletes the key (every token of it).
    expect((await A.admin("/key/delete", { keys: [keys[2]!.body.key] })).status).toBe(200);
    expect((await A.admin("/key/delete", { keys: [rotations[2]!.body.key] })).status).toBe(404);

    const after = await transactionsThroughBouncer();
    expect(after - before).toBeGreaterThan(60);
    // LISTEN is not through the pooler: both listeners are direct connections.
    const { rows } = await cluster.pool.query("SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND application_name LIKE 'gatehouse-listen:%'");
    expect(rows[0].n).toBe(2);
  }, 60_000);

  it("replicas started behind PgBouncer migrated (over the direct connection: a pooler would split the migration lock's session)", async () => {
    const { rows } = await cluster.pool.query("SELECT count(*)::int AS n FROM gh_schema_migrations");
    // Every migration in sql/, each applied once.
    expect(rows[0].n).toBe(readdirSync(new URL("../sql/", import.meta.url)).filter((f) => f.endsWith(".sql")).length);
  });
});
