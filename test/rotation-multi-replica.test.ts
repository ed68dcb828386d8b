import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateKey, startCluster, type Cluster, type Replica } from "./helpers/cluster.js";
import { openAIError } from "./helpers/http.js";
import { waitFor } from "./helpers/services.js";

/** docs/coherence.md #2: with notifications flowing, milliseconds; the hard bound is 2 s. */
const STALENESS_BOUND_MS = 2_000;

let cluster: Cluster;
let A: Replica, B: Replica, C: Replica;
beforeAll(async () => {
  cluster = await startCluster({ size: 3 });
  [A, B, C] = cluster.replicas as [Replica, Replica, Replica];
}, 60_000);
afterAll(async () => {
  await cluster?.close();
});

const generate = generateKey;

/** Puts `key` in every replica's caches, after its own generate event has been applied everywhere. */
async function warmEverywhere(key: string, model = "mock-gpt") {
  await cluster.settle();
  for (const r of [A, B, C]) expect(await r.chat(key, model), `warming on ${r.name}`).toBe(200);
}

/** Every replica answers `status` for `key` within the staleness bound; returns how long it took. */
async function enforcedEverywhere(key: string, status: number, model = "mock-gpt"): Promise<number> {
  const started = Date.now();
  await Promise.all(
    cluster.replicas.map((r) =>
      waitFor(async () => (await r.chat(key, model)) === status, { timeoutMs: STALENESS_BOUND_MS, intervalMs: 5, what: `${r.name} to answer ${status}` }),
    ),
  );
  return Date.now() - started;
}

describe("regenerate with a grace period, as curl would do it (the LiteLLM failure)", () => {
  it("the old key keeps working on every replica during the grace, as the new key's record", async () => {
    const old = await generate(A, { models: ["mock-gpt"], max_budget: 5, key_alias: "rotating" });
    await warmEverywhere(old.key);

    const regen = await A.admin(`/key/${old.key}/regenerate`, { grace_period: "1h" });
    expect(regen.status, regen.text).toBe(200);
    const next = regen.body;
    expect(next.key).toMatch(/^sk-/);
    expect(next.key).not.toBe(old.key);
    expect(next).toMatchObject({ key_alias: "rotating", models: ["mock-gpt"], max_budget: 5, previous_key_name: old.key_name });
    const revokeAt = Date.parse(next.revoke_at);
    expect(Math.abs(revokeAt - (Date.now() + 3_600_000))).toBeLessThan(60_000);

    // Right away, on every replica: both keys work.
    for (const r of [A, B, C]) {
      expect(await r.chat(old.key), `old key on ${r.name}`).toBe(200);
      expect(await r.chat(next.key), `new key on ${r.name}`).toBe(200);
    }
    const info = await C.admin(`/key/info?key=${old.key}`);
    expect(info.status).toBe(200);
    expect(info.body.key).toBe(old.token);
    expect(info.body.info).toMatchObject({ token: next.token, key_alias: "rotating", deprecated: { key_name: old.key_name, active_token: next.token } });
    expect(Date.parse(info.body.info.deprecated.revoke_at)).toBe(revokeAt);

    // The old key is the new key's record: a change to the key applies to it too, on every replica.
    expect((await B.admin("/key/update", { key: next.key, models: ["mock-other"] })).status).toBe(200);
    await enforcedEverywhere(old.key, 403, "mock-gpt");
    await enforcedEverywhere(old.key, 200, "mock-other");

    // Rotate again inside the grace: all three generations work, each older one pointing at the newest.
    const third = await B.admin("/key/regenerate", { key: next.key, grace_period: "30m" });
    expect(third.status, third.text).toBe(200);
    for (const r of [A, B, C]) {
      for (const k of [old.key, next.key, third.body.key]) expect(await r.chat(k, "mock-other"), `${r.name}`).toBe(200);
    }
    const chain = await cluster.pool.query("SELECT token, active_token, revoke_at FROM gh_deprecated_keys ORDER BY revoke_at");
    const rows = chain.rows.filter((r) => [old.token, next.token].includes(r.token));
    expect(rows).toHaveLength(2);
    for (const row of rows) expect(row.active_token).toBe(third.body.token);
    // Each keeps its own revoke_at.
    expect(rows.find((r) => r.token === old.token)!.revoke_at.getTime()).toBe(revokeAt);

    // Regenerating an old key again is refused and changes nothing.
    const stale = await A.admin(`/key/${old.key}/regenerate`, { grace_period: "1h" });
    expect(stale.status).toBe(409);
    expect(openAIError(stale.body).code).toBe("key_already_rotated");
  });

  it("the key may be named by its hash, and /key/regenerate takes it in the body", async () => {
    const k = await generate(A);
    const res = await C.admin(`/key/${k.token}/regenerate`, {});
    expect(res.status, res.text).toBe(200);
    const missing = await C.admin("/key/regenerate", { grace_period: "1h" });
    expect(missing.status).toBe(400);
  });
});

describe("changes made on one replica are enforced on every replica within the bound", () => {
  it("grace 0: the old key is refused everywhere, the new one works", async () => {
    const old = await generate(A);
    await warmEverywhere(old.key);
    const res = await A.admin(`/key/${old.key}/regenerate`, {});
    expect(res.status).toBe(200);
    expect(Math.abs(Date.parse(res.body.revoke_at) - Date.now())).toBeLessThan(5_000);
    await enforcedEverywhere(old.key, 401);
    await enforcedEverywhere(res.body.key, 200);
    expect((await B.admin(`/key/info?key=${old.key}`)).status).toBe(404);
  });

  it("block, unblock, update of models and of expiry, and delete", async () => {
    const k = await generate(A, { models: ["mock-gpt"] });
    await warmEverywhere(k.key);

    expect((await A.admin("/key/block", { key: k.key })).status).toBe(200);
    await enforcedEverywhere(k.key, 401);
    expect((await A.admin("/key/unblock", { key: k.key })).status).toBe(200);
    await enforcedEverywhere(k.key, 200);

    expect((await A.admin("/key/update", { key: k.key, models: ["mock-other"] })).status).toBe(200);
    await enforcedEverywhere(k.key, 403, "mock-gpt");
    await enforcedEverywhere(k.key, 200, "mock-other");

    expect((await A.admin("/key/update", { key: k.key, duration: "1s" })).status).toBe(200);
    await waitFor(async () => (await Promise.all([A, B, C].map((r) => r.chat(k.key, "mock-other")))).every((s) => s === 401), {
      timeoutMs: 1_000 + STALENESS_BOUND_MS,
      what: "expiry everywhere",
    });
    expect((await A.admin("/key/update", { key: k.key, duration: null })).status).toBe(200);
    await enforcedEverywhere(k.key, 200, "mock-other");

    expect((await A.admin("/key/delete", { keys: [k.key] })).status).toBe(200);
    await enforcedEverywhere(k.key, 401, "mock-other");
  });

  it("a key generated on A is usable on B at once even after B cached it as unknown", async () => {
    const custom = `sk-prewarmed-miss-${Date.now()}-0123456789abcdef`;
    expect(await B.chat(custom)).toBe(401); // B now remembers the miss
    expect((await A.admin("/key/generate", { key: custom })).status).toBe(200);
    await enforcedEverywhere(custom, 200);
  });
});

describe("one rotation per request", () => {
  it("concurrent regenerations of one key from A, B and C give exactly one new key and no 5xx", async () => {
    const k = await generate(A);
    await warmEverywhere(k.key);
    const attempts = await Promise.all([A, B, C, A, B, C, A, B, C].map((r) => r.admin(`/key/${k.key}/regenerate`, { grace_period: "1h" })));
    const statuses = attempts.map((a) => a.status);
    expect(statuses.filter((s) => s >= 500)).toEqual([]);
    const winners = attempts.filter((a) => a.status === 200);
    expect(winners).toHaveLength(1);
    for (const loser of attempts.filter((a) => a.status !== 200)) {
      expect(loser.status).toBe(409);
      openAIError(loser.body);
    }
    const { rows } = await cluster.pool.query("SELECT k.token FROM gh_keys k JOIN gh_deprecated_keys d ON d.key_id = k.key_id WHERE d.token = $1", [k.token]);
    expect(rows).toEqual([{ token: winners[0]!.body.token }]);
    await enforcedEverywhere(winners[0]!.body.key, 200);
    await enforcedEverywhere(k.key, 200);
  });

  it("a retried Idempotency-Key returns the first result on any replica, and rotates once", async () => {
    const k = await generate(A);
    const headers = { "idempotency-key": `rotate-${k.token.slice(0, 12)}` };
    const first = await A.admin(`/key/${k.key}/regenerate`, { grace_period: "1h" }, { headers });
    expect(first.status).toBe(200);
    const again = await Promise.all([B, C].map((r) => r.admin(`/key/${k.key}/regenerate`, { grace_period: "1h" }, { headers })));
    for (const a of again) {
      expect(a.status).toBe(200);
      expect(a.body.key).toBe(first.body.key);
    }
    const { rows } = await cluster.pool.query("SELECT count(*)::int AS n FROM gh_deprecated_keys WHERE token = $1", [k.token]);
    expect(rows[0].n).toBe(1);
    const stored = await cluster.pool.query("SELECT response FROM gh_idempotency WHERE idem_key = $1", [headers["idempotency-key"]]);
    expect(stored.rows[0].response.toString("latin1")).not.toContain(first.body.key); // sealed, not plaintext

    const other = await B.admin(`/key/${k.key}/regenerate`, { grace_period: "2h" }, { headers });
    expect(other.status).toBe(409);
    expect(openAIError(other.body).code).toBe("idempotency_key_reused");
  });

  it("/key/generate with an Idempotency-Key creates one key however often it is retried", async () => {
    const headers = { "idempotency-key": `gen-${Date.now()}` };
    const results = await Promise.all([A, B, C, A].map((r) => r.admin("/key/generate", { key_alias: headers["idempotency-key"] }, { headers })));
    expect(results.map((r) => r.status)).toEqual([200, 200, 200, 200]);
    expect(new Set(results.map((r) => r.body.key)).size).toBe(1);
    const { rows } = await cluster.pool.query("SELECT count(*)::int AS n FROM gh_keys WHERE key_alias = $1", [headers["idempotency-key"]]);
    expect(rows[0].n).toBe(1);
  });
});

describe("bad input changes nothing", () => {
  it.each(["1x", "-1h", "", "forever", "1.5h", "31d", "5w", "10 minutes"])("grace_period %j gets 400 and the old key stays active", async (grace) => {
    const k = await generate(A);
    const events = (await cluster.pool.query("SELECT count(*)::int AS n FROM gh_key_events")).rows[0].n;
    const res = await B.admin(`/key/${k.key}/regenerate`, { grace_period: grace });
    expect(res.status).toBe(400);
    expect(openAIError(res.body)).toMatchObject({ param: "grace_period" });
    expect((await C.admin(`/key/info?key=${k.key}`)).body.info.token).toBe(k.token);
    expect((await cluster.pool.query("SELECT count(*)::int AS n FROM gh_key_events")).rows[0].n).toBe(events);
    expect(await C.chat(k.key)).toBe(200);
  });

  it("a grace_period that is not a string, and an unknown key", async () => {
    const k = await generate(A);
    expect((await A.admin(`/key/${k.key}/regenerate`, { grace_period: 3600 })).status).toBe(400);
    const unknown = await A.admin("/key/sk-no-such-key-anywhere/regenerate", { grace_period: "1h" });
    expect(unknown.status).toBe(404);
    expect(await A.chat(k.key)).toBe(200);
  });
});

describe("the grace ends by the clock", () => {
  it("after revoke_at the old key is refused everywhere, whatever the caches hold", async () => {
    const old = await generate(A);
    const res = await A.admin(`/key/${old.key}/regenerate`, { grace_period: "2s" });
    expect(res.status).toBe(200);
    await warmEverywhere(old.key); // cached as a deprecated key
    const revokeAt = Date.parse(res.body.revoke_at);
    await waitFor(async () => (await Promise.all([A, B, C].map((r) => r.chat(old.key)))).every((s) => s === 401), {
      timeoutMs: revokeAt - Date.now() + 500,
      intervalMs: 20,
      what: "the grace to end",
    });
    expect(Date.now()).toBeGreaterThanOrEqual(revokeAt);
    expect((await C.admin(`/key/info?key=${old.key}`)).status).toBe(404);
    for (const r of [A, B, C]) expect(await r.chat(res.body.key)).toBe(200);
  });
});
