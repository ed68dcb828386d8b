import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateKey, startCluster, type Cluster, type Replica } from "./helpers/cluster.js";
import { openAIError } from "./helpers/http.js";
import { waitFor } from "./helpers/services.js";

/**
 * Every token that authenticates is addressable (docs/coherence.md, invariant 8): an admin operation given a
 * key's current token, or a deprecated token still in its grace, acts on that key, serialised with any
 * rotation of it, and answers 200 only when the change holds for every token of the key.
 */
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

async function regenerate(on: Replica, key: string, grace: string) {
  const res = await on.admin(`/key/${key}/regenerate`, { grace_period: grace });
  expect(res.status, res.text).toBe(200);
  return res.body as { key: string; token: string; key_id: string; key_name: string; revoke_at: string };
}

async function answeredEverywhere(key: string, status: number) {
  await Promise.all(
    [A, B, C].map((r) => waitFor(async () => (await r.chat(key)) === status, { timeoutMs: STALENESS_BOUND_MS, intervalMs: 5, what: `${r.name} to answer ${status} for the key` })),
  );
}

async function rowsOfKey(keyId: string) {
  const keys = await cluster.pool.query("SELECT token FROM gh_keys WHERE key_id = $1", [keyId]);
  const deprecated = await cluster.pool.query("SELECT token FROM gh_deprecated_keys WHERE key_id = $1", [keyId]);
  return keys.rowCount! + deprecated.rowCount!;
}

/** The scenario's offset between two racing requests (0–5 ms, both orders), not a wait for something. */
const stagger = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("a delete racing a regenerate of the same key on another replica", () => {
  it("deletes the key, whichever commits first: never 200 with the key alive, never a 5xx", async () => {
    const outcomes: string[] = [];
    for (let i = 0; i < 30; i++) {
      const k = await generate(A);
      const other = i % 2 === 0 ? await generate(A) : null;
      const keys = other ? [k.key, other.key] : [k.key];
      const delay = i % 6; // 0–5 ms apart, both orders
      const [regen, del] = await Promise.all([A.admin(`/key/${k.key}/regenerate`, { grace_period: "1h" }), stagger(delay).then(() => B.admin("/key/delete", { keys }))]);
      outcomes.push(`${regen.status}/${del.status}`);
      expect(regen.status, regen.text).toBeLessThan(500);
      expect(del.status, del.text).toBe(200);
      expect(del.body.deleted_keys).toEqual(keys);
      // A 200 means deleted: no row of the key is left, under any token.
      expect(await rowsOfKey(k.key_id), `try ${i}: key ${k.key_id} survived a delete that answered 200`).toBe(0);
      if (other) expect(await rowsOfKey(other.key_id)).toBe(0);
      if (i % 10 === 0) {
        await answeredEverywhere(k.key, 401);
        if (regen.status === 200) await answeredEverywhere(regen.body.key, 401);
      }
    }
    // Both orders happened: some rotations committed before the delete, some were refused after it.
    expect(outcomes.some((o) => o.startsWith("200"))).toBe(true);
  }, 120_000);
});

describe("admin operations addressed by a token in grace act on its key", () => {
  it("block, unblock, update, reset_spend, info and delete by the old token after a regenerate with grace 1h", async () => {
    const old = await generate(A, { models: ["mock-gpt"] });
    const next = await regenerate(A, old.key, "1h");
    await cluster.settle();
    await answeredEverywhere(old.key, 200);

    const blocked = await B.admin("/key/block", { key: old.key });
    expect(blocked.status, blocked.text).toBe(200);
    expect(blocked.body).toMatchObject({ key_id: old.key_id, blocked: true });
    // Both tokens of the key refuse, on every replica.
    await answeredEverywhere(old.key, 401);
    await answeredEverywhere(next.key, 401);

    const unblocked = await C.admin("/key/unblock", { key: old.key });
    expect(unblocked.status, unblocked.text).toBe(200);
    await answeredEverywhere(old.key, 200);
    await answeredEverywhere(next.key, 200);

    const updated = await A.admin("/key/update", { key: old.key, models: ["mock-embedding"] });
    expect(updated.status, updated.text).toBe(200);
    expect(updated.body).toMatchObject({ key_id: old.key_id, token: next.token, models: ["mock-embedding"] });
    await answeredEverywhere(next.key, 403); // mock-gpt is no longer allowed, through either token
    await answeredEverywhere(old.key, 403);

    const reset = await B.admin(`/key/${old.key}/reset_spend`, { reset_to: 0 });
    expect(reset.status, reset.text).toBe(200);

    const info = await C.admin(`/key/info?key=${encodeURIComponent(old.key)}`);
    expect(info.status, info.text).toBe(200);
    expect(info.body.info).toMatchObject({ key_id: old.key_id, token: next.token, deprecated: { key_name: old.key_name } });

    const deleted = await B.admin("/key/delete", { keys: [old.key] });
    expect(deleted.status, deleted.text).toBe(200);
    expect(await rowsOfKey(old.key_id)).toBe(0);
    await answeredEverywhere(next.key, 401);
    await answeredEverywhere(old.key, 401);
  }, 30_000);

  it("regenerate addressed by a token in grace is a 409 naming the key (one rotation per request), not a 404", async () => {
    const old = await generate(A);
    const next = await regenerate(A, old.key, "1h");
    const again = await B.admin(`/key/${old.key}/regenerate`, { grace_period: "1h" });
    expect(again.status, again.text).toBe(409);
    expect(openAIError(again.body).code).toBe("key_already_rotated");
    expect(openAIError(again.body).message).toContain(old.key_id);
    // Nothing changed: the current token is still the one the first rotation gave.
    expect((await cluster.pool.query("SELECT token FROM gh_keys WHERE key_id = $1", [old.key_id])).rows[0].token).toBe(next.token);
  });

  it("a token whose grace has ended, or that was never issued, is 404 for every operation", async () => {
    const old = await generate(A);
    await regenerate(A, old.key, "0s");
    for (const [path, body] of [
      ["/key/block", { key: old.key }],
      ["/key/update", { key: old.key, models: [] }],
      ["/key/delete", { keys: [old.key] }],
      [`/key/${old.key}/end_grace`, {}],
    ] as const) {
      const res = await B.admin(path, body);
      expect(res.status, `${path}: ${res.text}`).toBe(404);
      expect(openAIError(res.body).code).toBe("key_not_found");
    }
  });
});

describe("ending a grace period early (a leaked old token)", () => {
  it("stops every deprecated token of the key on every replica at once; the current token keeps working", async () => {
    const first = await generate(A);
    const second = await regenerate(A, first.key, "1h");
    const third = await regenerate(B, second.key, "1h");
    await cluster.settle();
    for (const key of [first.key, second.key, third.key]) await answeredEverywhere(key, 200);

    // Addressed by one of the old tokens itself.
    const ended = await C.admin(`/key/${first.key}/end_grace`, {});
    expect(ended.status, ended.text).toBe(200);
    expect(ended.body.key_id).toBe(first.key_id);
    expect(ended.body.revoked.map((r: { token: string }) => r.token).sort()).toEqual([first.token, second.token].sort());
    await answeredEverywhere(first.key, 401);
    await answeredEverywhere(second.key, 401);
    await answeredEverywhere(third.key, 200);

    // Again, by body: nothing left in grace, still 200, nothing revoked.
    const again = await A.admin("/key/end_grace", { key: third.key });
    expect(again.status, again.text).toBe(200);
    expect(again.body.revoked).toEqual([]);
  }, 30_000);
});
