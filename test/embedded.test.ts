import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { api, chatBody } from "./helpers/http.js";
import { REDIS_URL, waitFor } from "./helpers/services.js";
import { spawnReplica, type ReplicaProcess } from "./support/replica-process.mjs";

/**
 * With no DATABASE_URL, `gatehouse start` runs one replica on an embedded Postgres (PGlite) in
 * GATEHOUSE_DATA_DIR, with in-process L2, locks and counters; its data survives a restart; REDIS_URL
 * without DATABASE_URL is refused. Real processes, as a newcomer runs them.
 */
const dataDir = path.join(mkdtempSync(path.join(tmpdir(), "gh-embedded-")), ".gatehouse");
let running: ReplicaProcess | undefined;
afterAll(async () => {
  await running?.stop("SIGKILL");
});

const start = async () => (running = await spawnReplica({ GATEHOUSE_DATA_DIR: dataDir }, [], { timeoutMs: 60_000 }));

describe("no DATABASE_URL: the embedded default", () => {
  let masterKey = "";
  let rotatedOld = "";
  let rotatedNew = "";
  let blocked = "";

  it("serves the whole walk-through on PGlite with no Postgres or Redis configured, and says how to scale out", async () => {
    const r = await start();
    expect(r.output.join("\n")).toMatch(/single replica on the embedded database.*set DATABASE_URL and REDIS_URL.*docker compose up/);
    masterKey = readFileSync(path.join(dataDir, "master_key"), "utf8").trim();
    const admin = (p: string, body?: unknown) => api(r.url, p, { key: masterKey, body });
    expect((await api(r.url, "/health/readiness")).body).toMatchObject({ status: "healthy", listener: "not used" });
    // The cluster page's replica: its Postgres breaker, and no Redis breaker, there being no Redis to break.
    const replicas = await waitFor(
      async () => {
        const listed = (await admin("/ui/api/cluster")).body.replicas;
        return listed.length === 1 && listed;
      },
      { what: "the replica's first heartbeat" },
    );
    expect(replicas[0].breakers).toEqual({ postgres: "closed" });
    expect((await api(r.url, "/health/readiness")).body.breakers).toEqual({ postgres: "closed" });

    const k = (await admin("/key/generate", { rpm_limit: 2 })).body.key as string;
    expect((await api(r.url, "/v1/chat/completions", { key: k, body: chatBody("mock-gpt") })).status).toBe(200);
    expect((await api(r.url, "/v1/chat/completions", { key: k, body: chatBody("mock-gpt") })).status).toBe(200);
    expect((await api(r.url, "/v1/chat/completions", { key: k, body: chatBody("mock-gpt") })).status).toBe(429);
    // Spend logs go in by INSERT here (PGlite takes no COPY over its socket): one row per request, the refused one too.
    await waitFor(async () => (await admin(`/spend/logs?api_key=${k}`)).body.length === 3, { what: "three spend log rows" });

    rotatedOld = (await admin("/key/generate", {})).body.key;
    const regen = await admin(`/key/${rotatedOld}/regenerate`, { grace_period: "1h" });
    expect(regen.status).toBe(200);
    rotatedNew = regen.body.key;
    for (const key of [rotatedOld, rotatedNew]) expect((await api(r.url, "/v1/models", { key })).status).toBe(200);

    blocked = (await admin("/key/generate", {})).body.key;
    expect((await api(r.url, "/v1/models", { key: blocked })).status).toBe(200);
    expect((await admin("/key/block", { key: blocked })).status).toBe(200);
    expect((await api(r.url, "/v1/models", { key: blocked })).status).toBe(401);
    expect(await r.stop("SIGTERM")).toBe(0);
  }, 90_000);

  it("keeps its data across a restart", async () => {
    const r = await start();
    expect((await api(r.url, "/v1/models", { key: rotatedNew })).status).toBe(200);
    expect((await api(r.url, "/v1/models", { key: rotatedOld })).status).toBe(200); // still in its grace
    expect((await api(r.url, "/v1/models", { key: blocked })).status).toBe(401);
    const info = await api(r.url, `/key/info?key=${rotatedOld}`, { key: masterKey });
    expect(info.body.info.deprecated).toBeDefined();
    expect(await r.stop("SIGTERM")).toBe(0);
  }, 90_000);

  it("refuses REDIS_URL without DATABASE_URL: other replicas could not see the embedded data", async () => {
    const failed = await spawnReplica({ GATEHOUSE_DATA_DIR: dataDir, REDIS_URL }, [], { timeoutMs: 30_000 }).then(
      () => undefined,
      (err: Error) => err.message,
    );
    expect(failed).toMatch(/exited with 78/);
    expect(failed).toMatch(/REDIS_URL .* is set but no DATABASE_URL/);
  });
});
