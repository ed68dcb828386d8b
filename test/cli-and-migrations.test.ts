import { existsSync, mkdtempSync, readFileSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createPool } from "../src/store/db.js";
import { migrate, readMigrations } from "../src/store/migrator.js";
import { api, chatBody } from "./helpers/http.js";
import { spawnReplica } from "./support/replica-process.mjs";
import { createRedisNamespace, createTestDatabase, REDIS_URL, type RedisNamespace, type TestDatabase } from "./helpers/services.js";

let db: TestDatabase;
let ns: RedisNamespace;
beforeAll(async () => {
  db = await createTestDatabase();
  ns = createRedisNamespace();
});
afterAll(async () => {
  await db?.drop();
  await ns?.cleanup();
});

describe("migrations", () => {
  it("N replicas migrating at once apply each file exactly once", async () => {
    const pools = Array.from({ length: 4 }, () => createPool(db.url, { max: 2 }));
    try {
      const results = await Promise.all(pools.map((p) => migrate(p)));
      const applied = results.flat();
      expect(applied).toHaveLength(readMigrations().length);
      expect(new Set(applied).size).toBe(applied.length);
      const { rows } = await pools[0]!.query("SELECT count(*)::int AS n FROM gh_schema_migrations");
      expect(rows[0].n).toBe(readMigrations().length);
      expect(await migrate(pools[0]!)).toEqual([]);
    } finally {
      await Promise.all(pools.map((p) => p.end()));
    }
  });
});

describe("the gatehouse CLI", () => {
  it("`gatehouse start` with no master key generates one into the data dir, never logs it, and serves", async () => {
    const dataDir = mkdtempSync(path.join(tmpdir(), "gh-data-"));
    const replica = await spawnReplica({ DATABASE_URL: db.url, REDIS_URL, GATEHOUSE_REDIS_PREFIX: ns.prefix, GATEHOUSE_DATA_DIR: dataDir });
    try {
      const file = path.join(dataDir, "master_key");
      expect(existsSync(file)).toBe(true);
      expect(statSync(file).mode & 0o777).toBe(0o600);
      const masterKey = readFileSync(file, "utf8").trim();
      expect(replica.output.join("\n")).toContain(file);

      const created = await api(replica.url, "/key/generate", { key: masterKey, body: { models: ["mock-gpt"] } });
      expect(created.status).toBe(200);
      const chat = await api(replica.url, "/v1/chat/completions", { key: created.body.key, body: chatBody("mock-gpt") });
      expect(chat.status).toBe(200);
      expect((await api(replica.url, "/health/readiness")).body).toMatchObject({ status: "healthy", db: "connected", redis: "connected" });
      expect((await api(replica.url, "/health/liveliness")).status).toBe(200);

      expect(await replica.stop("SIGTERM")).toBe(0);
      const log = replica.output.join("\n");
      expect(log).not.toContain(masterKey);
      expect(log).not.toContain(created.body.key);
      expect(log).toContain('"key_name":"sk-...');
    } finally {
      await replica.stop("SIGKILL");
    }
  });

  it("`gatehouse start --port` and a bad config fail clearly", async () => {
    const failed = await spawnReplica({ DATABASE_URL: db.url, REDIS_URL, GATEHOUSE_MASTER_KEY: "sk-master-abcdef" }, ["--port", "nope"]).catch((e: Error) => e);
    expect(String(failed)).toContain("--port");
  });
});
