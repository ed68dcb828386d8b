import { randomBytes } from "node:crypto";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { stringify } from "yaml";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startFakeUpstream, type FakeUpstream } from "./helpers/fake-upstream.js";
import { api, chatBody } from "./helpers/http.js";
import { createRedisNamespace, createTestDatabase, REDIS_URL, type RedisNamespace, type TestDatabase } from "./helpers/services.js";
import { spawnReplica, type ReplicaProcess } from "./support/replica-process.mjs";

/**
 * No plaintext key, master key or upstream api_key ever reaches the log. A real replica process
 * runs at debug level through traffic that puts keys everywhere they could leak (headers, paths, query
 * strings, bodies, errors, rotations, upstream failures); then every line it wrote is scanned.
 */
const UPSTREAM_API_KEY = `sk-upstream-${randomBytes(12).toString("hex")}`;
const MASTER_KEY = `sk-master-${randomBytes(12).toString("hex")}`;

let upstream: FakeUpstream;
let db: TestDatabase;
let redis: RedisNamespace;
let replica: ReplicaProcess;

beforeAll(async () => {
  upstream = await startFakeUpstream();
  db = await createTestDatabase();
  redis = createRedisNamespace();
  const dir = mkdtempSync(path.join(tmpdir(), "gh-logscan-"));
  const config = path.join(dir, "config.yaml");
  writeFileSync(
    config,
    stringify({
      model_list: [
        { model_name: "echo", litellm_params: { model: "openai/echo", api_base: upstream.url, api_key: "os.environ/UPSTREAM_KEY" } },
        { model_name: "broken", litellm_params: { model: "openai/broken", api_base: upstream.url, api_key: "os.environ/UPSTREAM_KEY" } },
        { model_name: "mock-gpt", litellm_params: { model: "mock/mock-gpt" } },
      ],
    }),
  );
  replica = await spawnReplica(
    {
      DATABASE_URL: db.url,
      REDIS_URL,
      GATEHOUSE_REDIS_PREFIX: redis.prefix,
      GATEHOUSE_MASTER_KEY: MASTER_KEY,
      GATEHOUSE_DATA_DIR: dir,
      UPSTREAM_KEY: UPSTREAM_API_KEY,
      LOG_LEVEL: "debug",
    },
    ["--config", config],
  );
}, 30_000);

afterAll(async () => {
  await replica?.stop();
  await upstream?.close();
  await db?.drop();
  await redis?.cleanup();
});

describe("logs never contain a secret", () => {
  it("after traffic that carries keys in headers, paths, query strings and bodies, no line holds one", async () => {
    const admin = (p: string, body?: unknown) => api(replica.url, p, { key: MASTER_KEY, body });
    const secrets = [MASTER_KEY, UPSTREAM_API_KEY];
    const generated = await admin("/key/generate", { key_alias: "scan", metadata: { note: "x" } });
    expect(generated.status).toBe(200);
    const key: string = generated.body.key;
    secrets.push(key);
    const custom = `sk-custom-${randomBytes(16).toString("hex")}`;
    expect((await admin("/key/generate", { key: custom })).status).toBe(200);
    secrets.push(custom);

    // The proxy path: success through an upstream with an api_key, an upstream failure, bad input.
    expect((await api(replica.url, "/v1/chat/completions", { key, body: chatBody("echo") })).status).toBe(200);
    expect((await api(replica.url, "/v1/chat/completions", { key, body: chatBody("broken") })).status).toBe(502);
    expect((await api(replica.url, "/v1/chat/completions", { key, rawBody: `{"model": "${key}", "messages": [` })).status).toBe(400);
    expect((await api(replica.url, "/v1/chat/completions", { key, body: chatBody(key) })).status).toBe(404);
    expect((await api(replica.url, "/v1/chat/completions", { headers: { "api-key": custom }, body: chatBody("mock-gpt") })).status).toBe(200);
    // Unknown keys, and the master key calling a model.
    const unknown = `sk-unknown-${randomBytes(10).toString("hex")}`;
    secrets.push(unknown);
    expect((await api(replica.url, "/v1/chat/completions", { key: unknown, body: chatBody("mock-gpt") })).status).toBe(401);
    expect((await api(replica.url, "/v1/chat/completions", { key: MASTER_KEY, body: chatBody("mock-gpt") })).status).toBe(200);
    // A virtual key on an admin route, and keys in paths and query strings.
    expect((await api(replica.url, `/key/info?key=${key}`, { key })).status).toBe(403);
    expect((await admin(`/key/info?key=${key}`)).status).toBe(200);
    expect((await admin(`/key/${unknown}/regenerate`, {})).status).toBe(404);
    const rotated = await admin(`/key/${key}/regenerate`, { grace_period: "1h" });
    expect(rotated.status).toBe(200);
    secrets.push(rotated.body.key);
    expect((await admin(`/key/${key}/regenerate`, { grace_period: "nonsense" })).status).toBe(400);
    expect((await admin(`/key/${rotated.body.key}/reset_spend`, { reset_to: 0 })).status).toBe(200);
    expect((await admin("/key/update", { key: rotated.body.key, metadata: { secret_looking: key } })).status).toBe(200);
    expect((await admin("/key/block", { key: custom })).status).toBe(200);
    expect((await api(replica.url, "/v1/models", { key: custom })).status).toBe(401);
    expect((await admin("/key/delete", { keys: [custom] })).status).toBe(200);
    expect((await api(replica.url, `/no/such/route/${key}`, { key })).status).toBe(404);
    // Keys in paths written the ways a router still reads them: routes match in any case, segments are
    // percent-decoded. The route below matches (the key is rotated), so the path was read as a key route.
    const spelled = await admin("/key/generate", {});
    secrets.push(spelled.body.key);
    const respelled = await admin(`/KEY/${percentS(spelled.body.key)}/Regenerate`, {});
    expect(respelled.status).toBe(200);
    secrets.push(respelled.body.key);
    expect((await admin(`/Key/${percentAll(respelled.body.key)}/reset_spend`, { reset_to: 0 })).status).toBe(200);
    expect((await admin(`/key/${doubly(respelled.body.key)}/end_grace`, {})).status).toBe(404);
    expect((await api(replica.url, `/v1/models/${percentS(key)}`, { key })).status).toBe(404);
    expect((await api(replica.url, `/V1/MODELS/${percentAll(key)}`, { key })).status).toBe(404);
    expect((await api(replica.url, `/models/${percentS(key).toUpperCase()}`, { key })).status).toBe(404);

    // Let the asynchronous log destination flush: a clean stop writes everything out.
    expect(await replica.stop("SIGTERM")).toBe(0);
    const log = replica.output.join("\n");
    expect(replica.output.length).toBeGreaterThan(20);
    expect(log).toContain('"msg":"request"');
    // What makes each a secret is what follows "sk-": a line holding that, however the prefix was written, leaks it.
    for (const secret of secrets.map((s) => s.slice("sk-".length))) {
      const leak = replica.output.find((line) => line.includes(secret));
      expect(leak?.replaceAll(secret, "<SECRET>"), "a secret is in this log line").toBeUndefined();
    }
    // Only display names (sk-...abcd) of keys are logged.
    expect(log).toMatch(/"key_name":"sk-\.\.\.[\w-]{4}"/);
  }, 30_000);
});

/** `sk-…` with its "s" percent-encoded: `%73k-…`. */
function percentS(key: string): string {
  return key.replace(/^s/i, "%73");
}

/** `%2573k-…`: percent-encoded twice (one decode leaves `%73k-…`). */
function doubly(key: string): string {
  return percentS(key).replace("%", "%25");
}

/** Every character percent-encoded. */
function percentAll(key: string): string {
  return [...Buffer.from(key)].map((b) => `%${b.toString(16).toUpperCase().padStart(2, "0")}`).join("");
}

describe("a path as it is logged", () => {
  const key = "sk-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z";
  const body = key.slice(3);
  it.each([
    ["/key/sk-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z/regenerate", "/key/[redacted]/regenerate"],
    [`/KEY/${percentS(key)}/regenerate`, "/KEY/[redacted]/regenerate"],
    [`/Key/${percentAll(key)}/RESET_SPEND`, "/Key/[redacted]/RESET_SPEND"],
    [`/key/${doubly(key)}/end_grace`, "/key/[redacted]/end_grace"],
    [`/%6Bey/${body}/regenerate`, "/%6Bey/[redacted]/regenerate"],
    [`/v1/models/${percentS(key)}`, "/v1/models/[redacted]"],
    [`/V1/MODELS/${percentAll(key)}`, "/V1/MODELS/[redacted]"],
    [`/v1/models/${key.toUpperCase()}`, "/v1/models/[redacted]"],
    // A custom key may hold "/": everything after its start goes, but the operation that ends the route.
    [`/key/sk-abc/${body}/regenerate`, "/key/[redacted]/[redacted]/regenerate"],
    [`/no/such/${key}/${body}`, "/no/such/[redacted]/[redacted]"],
    ["/key/generate", "/key/generate"],
    ["/v1/chat/completions", "/v1/chat/completions"],
    ["/v1/models/gpt-4o%2Dmini", "/v1/models/gpt-4o%2Dmini"],
    ["/key/sk-%ZZ/regenerate", "[path not validly percent-encoded]"],
  ])("%s is logged as %s", async (path, logged) => {
    const { loggablePath } = await import("../src/http/loggable-path.js");
    expect(loggablePath(path)).toBe(logged);
  });
});

describe("a warning every request repeats during one outage", () => {
  it("is logged once, then at most once per interval with the number left out", async () => {
    const { createLogger, repeatedWarning } = await import("../src/logger.js");
    const { Writable } = await import("node:stream");
    const lines: Array<Record<string, unknown>> = [];
    const destination = new Writable({
      write(chunk, _enc, done) {
        lines.push(JSON.parse(chunk.toString()));
        done();
      },
    });
    let now = 0;
    const warn = repeatedWarning(createLogger({ destination }), 10_000, () => now);
    for (let i = 0; i < 1_000; i++) warn("get", { op: "get" }, "L2 cache operation failed");
    warn("fill", { op: "fill" }, "L2 cache operation failed"); // another kind has its own count
    now = 10_000;
    warn("get", { op: "get" }, "L2 cache operation failed");
    expect(lines.map((l) => [l.op, l.similar_left_out])).toEqual([
      ["get", undefined],
      ["fill", undefined],
      ["get", 999],
    ]);
  });
});
