import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateKey, startCluster, type Cluster, type Replica } from "./helpers/cluster.js";
import { startFakeUpstream, type FakeUpstream } from "./helpers/fake-upstream.js";
import { api, chatBody, openAIError } from "./helpers/http.js";
import { waitFor } from "./helpers/services.js";
import { randomUUID } from "node:crypto";
import { MODELS_CACHE_KEY } from "../src/models/model-registry.js";
import { appendEvent } from "../src/store/event-store.js";
import { nextKeyVersion } from "../src/store/key-store.js";

/** Models added, changed and deleted through the API, on 3 replica processes (docs/models.md). */
let cluster: Cluster;
let upstream: FakeUpstream;
let A: Replica;
let B: Replica;
let C: Replica;
const SECRET = "sk-upstream-secret-0123456789abcdef";
const ROTATED = "sk-upstream-rotated-0123456789abcdef";

beforeAll(async () => {
  upstream = await startFakeUpstream();
  cluster = await startCluster({ size: 3 });
  [A, B, C] = cluster.replicas as [Replica, Replica, Replica];
}, 60_000);
afterAll(async () => {
  await cluster?.close();
  await upstream?.close();
});

async function everywhere(key: string, model: string, check: (res: { status: number; body: any }) => boolean, what: string) {
  for (const r of cluster.replicas) {
    await waitFor(async () => check(await api(r.url, "/v1/chat/completions", { key, body: chatBody(model) })), { timeoutMs: 2_000, intervalMs: 10, what: `${r.name}: ${what}` });
  }
}

describe("database models on 3 replicas", () => {
  it("a model added on one replica is served by every replica, with its key, which no answer, row or log shows", async () => {
    const key = await generateKey(A, {});
    // Refused first everywhere (and "no such model" remembered nowhere).
    for (const r of cluster.replicas) expect((await api(r.url, "/v1/chat/completions", { key: key.key, body: chatBody("db-echo") })).status).toBe(404);
    const added = await B.admin("/model/new", {
      model_name: "db-echo",
      litellm_params: { model: "openai/echo", api_base: `${upstream.url}/v1`, api_key: SECRET },
      model_info: { team: "x" },
    });
    expect(added.status).toBe(200);
    expect(added.body.litellm_params).toEqual({ model: "openai/echo", api_base: `${upstream.url}/v1`, api_key: "[hidden]" });
    await everywhere(key.key, "db-echo", (res) => res.status === 200, "serve the new model");
    const seen = upstream.requests.filter((r) => r.headers.authorization === `Bearer ${SECRET}`);
    expect(seen.length).toBeGreaterThanOrEqual(3);

    for (const path of ["/model/info", "/v1/model/info"]) {
      const info = await C.admin(path);
      expect(info.status).toBe(200);
      expect(JSON.stringify(info.body)).not.toContain(SECRET);
      expect(info.body.data.find((m: any) => m.model_name === "db-echo").model_info).toMatchObject({ id: added.body.model_id, db_model: true, team: "x" });
    }
    // A virtual key sees only the models it may use.
    const narrow = await generateKey(A, { models: ["mock-gpt"] });
    expect((await api(A.url, "/v1/model/info", { key: narrow.key })).body.data.map((m: any) => m.model_name)).toEqual(["mock-gpt"]);
    const { rows } = await cluster.pool.query("SELECT params::text, api_key_sealed FROM gh_models WHERE model_id = $1", [added.body.model_id]);
    expect(rows[0].params).not.toContain(SECRET);
    expect(rows[0].api_key_sealed).toMatch(/^v1\./);
    expect(rows[0].api_key_sealed).not.toContain(SECRET);
    for (const r of cluster.replicas) expect(r.output.join("\n")).not.toContain(SECRET);
    // Keys may name it now.
    expect((await C.admin("/key/generate", { models: ["db-echo"] })).status).toBe(200);
  });

  it("an update reaches every replica (a new upstream key is used everywhere); a delete refuses the model everywhere", async () => {
    const key = await generateKey(A, {});
    const added = await A.admin("/model/new", { model_name: "db-rotating", litellm_params: { model: "openai/echo", api_base: `${upstream.url}/v1`, api_key: SECRET } });
    // The replica that added it lists it at once (a listing waits for the read its own change started).
    expect((await A.admin("/model/info")).body.data.map((m: any) => m.model_name)).toContain("db-rotating");
    await everywhere(key.key, "db-rotating", (res) => res.status === 200, "serve the model");
    const updated = await C.admin("/model/update", { model_id: added.body.model_id, litellm_params: { model: "openai/echo", api_base: `${upstream.url}/v1`, api_key: ROTATED } });
    expect(updated.status).toBe(200);
    await everywhere(key.key, "db-rotating", (res) => res.status === 200 && res.body.echo?.authorization === `Bearer ${ROTATED}`, "send the new upstream key");

    // A partial update merges (LiteLLM's behaviour); a new api_base needs the key again (the stored one stays home).
    expect((await C.admin("/model/update", { model_id: added.body.model_id, litellm_params: { api_key: SECRET } })).status).toBe(200);
    await everywhere(key.key, "db-rotating", (res) => res.status === 200 && res.body.echo?.authorization === `Bearer ${SECRET}`, "send the key given alone");
    const moved = await C.admin("/model/update", { model_id: added.body.model_id, litellm_params: { api_base: "http://127.0.0.1:9/v1" } });
    expect(moved.status).toBe(400);
    expect(openAIError(moved.body).code).toBe("api_key_required");
    const deleted = await B.admin("/model/delete", { id: added.body.model_id });
    expect(deleted.body).toMatchObject({ deleted: true, model_name: "db-rotating" });
    expect((await B.admin("/model/info")).body.data.map((m: any) => m.model_name)).not.toContain("db-rotating");
    await everywhere(key.key, "db-rotating", (res) => res.status === 404 && openAIError(res.body).code === "model_not_found", "refuse the deleted model");
    expect((await B.admin("/model/delete", { id: added.body.model_id })).status).toBe(404);
    expect((await A.admin("/model/info")).body.data.map((m: any) => m.model_name)).not.toContain("db-rotating");
  });

  it("bad model definitions are refused with a 400 naming the field, and nothing is written", async () => {
    const before = (await cluster.pool.query("SELECT count(*)::int AS n FROM gh_models")).rows[0].n;
    expect((await A.admin("/model/new", { model_name: "x", litellm_params: { model: "nope/x" } })).status).toBe(400);
    expect((await A.admin("/model/new", { model_name: "x", litellm_params: { model: "azure/x" } })).status).toBe(400);
    expect((await A.admin("/model/new", { model_name: "x", litellm_params: { model: "openai/x", api_base: `${upstream.url}/v1`, api_key: "os.environ/SECRET" } })).status).toBe(
      400,
    );
    expect((await A.admin("/model/new", { litellm_params: { model: "mock/x" } })).status).toBe(400);
    expect((await A.admin("/model/update", { model_name: "y" })).status).toBe(400);
    // Only the fields Gatehouse uses are stored: anything else could be a secret kept in clear.
    const extra = await A.admin("/model/new", { model_name: "x", litellm_params: { model: "mock/x", extra_headers: { authorization: "Bearer leak" } } });
    expect(extra.status).toBe(400);
    expect(JSON.stringify(extra.body)).toContain("extra_headers");
    expect((await cluster.pool.query("SELECT count(*)::int AS n FROM gh_models")).rows[0].n).toBe(before);
  });

  it("a client that leaves while its model is being read again ends its request: the attempt after the read stops at once", async () => {
    const key = await generateKey(A, {});
    const added = await B.admin("/model/new", { model_name: "db-reread", litellm_params: { model: "openai/stream-200", api_base: `${upstream.url}/v1`, api_key: SECRET } });
    expect(added.status).toBe(200);
    await everywhere(key.key, "db-reread", (res) => res.status === 200, "serves db-reread");
    const recorded = async () => Number(/^gatehouse_spend_log_rows_total\{outcome="recorded"\} (\d+)/m.exec((await A.admin("/metrics")).text)?.[1] ?? 0);
    const waiting = async () => (await A.admin("/debug/routing")).body.waiting_for_model_read as number;
    // The database models are read again after a model change; the test holds that read back with a lock on their
    // table, and announces a change the way `gatehouse import-litellm` does (an event, no row changed).
    const lock = await cluster.pool.connect();
    try {
      await lock.query("BEGIN");
      await lock.query("LOCK TABLE gh_models IN ACCESS EXCLUSIVE MODE");
      const announce = await cluster.pool.connect();
      try {
        await announce.query("BEGIN");
        await appendEvent(announce, "model_change", [MODELS_CACHE_KEY], await nextKeyVersion(announce), randomUUID());
        await announce.query("COMMIT");
      } finally {
        announce.release();
      }
      const before = await recorded();
      const leaving = new AbortController();
      const sent = fetch(`${A.url}/v1/chat/completions`, {
        method: "POST",
        headers: { authorization: `Bearer ${key.key}`, "content-type": "application/json" },
        body: JSON.stringify(chatBody("db-reread", { stream: true })),
        signal: leaving.signal,
      }).then(
        (res) => res.text(),
        (err: Error) => err.name,
      );
      // The request has its key and its body, and waits for the model's read; the client leaves meanwhile.
      await waitFor(async () => (await waiting()) === 1, { timeoutMs: 5_000, intervalMs: 10, what: "the request to wait for the models' read" });
      leaving.abort();
      expect(await sent).toBe("AbortError");
      await lock.query("COMMIT");
      // The read done, the relay meets a signal that already fired: the stream stops before its first byte and the
      // request's spend row is recorded. (A signal made after the client left missed it: the stream then waited for
      // a drain of the closed socket that never came, and no row was ever recorded.)
      await waitFor(async () => (await recorded()) === before + 1, { timeoutMs: 5_000, what: "the left request's spend row" });
    } finally {
      await lock.query("ROLLBACK").catch(() => {});
      lock.release();
    }
    expect(await waiting()).toBe(0);
    await everywhere(key.key, "db-reread", (res) => res.status === 200, "serves db-reread after the read");
  });
});
