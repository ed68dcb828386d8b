import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Authenticator } from "../src/auth/authenticator.js";
import { L1Cache } from "../src/auth/l1-cache.js";
import { L2Cache, l2MacKey } from "../src/auth/l2-cache.js";
import { CacheInvalidator } from "../src/coherence/cache-invalidator.js";
import { startTcpProxy } from "./support/tcp-proxy.mjs";
import { authRecordFromRow } from "../src/auth/auth-record.js";
import { findKeyByToken } from "../src/store/key-store.js";
import type { RedisKeys } from "../src/redis/key-names.js";
import { createRedis, type GatehouseRedis } from "../src/redis/client.js";
import { startTestGateway, type TestGateway } from "./helpers/gateway-fixture.js";
import { REDIS_URL } from "./helpers/services.js";

let gw: TestGateway;
let redis: GatehouseRedis;
let keys: RedisKeys;
beforeAll(async () => {
  gw = await startTestGateway();
  redis = createRedis(REDIS_URL);
  await redis.connect();
  keys = gw.gateway.redisKeys;
});
afterAll(async () => {
  redis?.disconnect();
  await gw?.close();
});

/** A second authenticator over the same Postgres and Redis namespace: a replica's request path, in-process. */
function freshAuthenticator() {
  const l1 = new L1Cache({ maxEntries: 100, ttlMs: 60_000, negativeTtlMs: 2_000 });
  const l2 = new L2Cache(
    redis,
    keys,
    3600,
    (op, err) => {
      throw new Error(`L2 ${op} failed: ${String(err)}`);
    },
    undefined,
    l2MacKey(gw.masterKey),
  );
  return { l1, l2, auth: new Authenticator(l1, l2, gw.gateway.db) };
}

describe("auth is served from each cache level", () => {
  it("reads Postgres first, then L1; a new replica's L1 miss is served by L2", async () => {
    const k = await gw.newKey();
    await redis.del(keys.authRecord(k.token)); // generate wrote a tombstone; start from nothing in L2
    const a = freshAuthenticator();
    expect((await a.auth.authenticate(k.key)).level).toBe("db");
    expect((await a.auth.authenticate(k.key)).level).toBe("l1");
    expect(await redis.get(keys.authRecord(k.token))).toMatch(/^\d+\|[\w-]+\|\{/);

    const b = freshAuthenticator();
    const fromL2 = await b.auth.authenticate(k.key);
    expect(fromL2.level).toBe("l2");
    expect(fromL2.record.token).toBe(k.token);
    expect((await b.auth.authenticate(k.key)).level).toBe("l1");
  });

  it("caches a miss briefly in L1 and forgets it when told", async () => {
    const a = freshAuthenticator();
    const unknown = "sk-not-a-key-at-all-123";
    await expect(a.auth.authenticate(unknown)).rejects.toMatchObject({ status: 401 });
    const { hashKey } = await import("../src/auth/key-material.js");
    expect(a.l1.get(hashKey(unknown))?.record).toBeNull();
    a.l1.invalidate(hashKey(unknown));
    expect(a.l1.get(hashKey(unknown))).toBeUndefined();
  });

  it("concurrent misses for one key share one look-up", async () => {
    const k = await gw.newKey();
    const a = freshAuthenticator();
    const results = await Promise.all(Array.from({ length: 20 }, () => a.auth.authenticate(k.key)));
    // One fill served everyone: the same record object, from one level.
    expect(new Set(results.map((r) => r.level)).size).toBe(1);
    expect(results.every((r) => r.record === results[0]!.record)).toBe(true);
  });
});

describe("no stale refill (docs/coherence.md #5)", () => {
  it("an L1 fill that began before an invalidation does not land", async () => {
    const k = await gw.newKey();
    const { l1 } = freshAuthenticator();
    const row = (await findKeyByToken(gw.gateway.pool, k.token))!;
    const ticket = l1.beginFill(k.token);
    l1.invalidate(k.token); // the change arrives while the read is in flight
    expect(l1.completeFill(ticket, authRecordFromRow(row))).toBe(false);
    expect(l1.get(k.token)).toBeUndefined();

    const t2 = l1.beginFill(k.token);
    l1.clear();
    expect(l1.completeFill(t2, authRecordFromRow(row))).toBe(false);
    const t3 = l1.beginFill(k.token);
    expect(l1.completeFill(t3, authRecordFromRow(row))).toBe(true);
  });

  it("an L2 fill of a row read before an update cannot overwrite the update's tombstone or the newer record", async () => {
    const k = await gw.newKey({ models: ["mock-gpt"] });
    const { l2 } = freshAuthenticator();
    const before = authRecordFromRow((await findKeyByToken(gw.gateway.pool, k.token))!);
    const upd = await gw.admin("/key/update", { key: k.key, models: ["mock-other"] });
    expect(upd.status).toBe(200);
    // The update wrote a tombstone at its version: the stale fill is refused.
    await l2.fill(k.token, before);
    expect(await l2.get(k.token)).toBeUndefined();
    // The fresh record may land, and a late stale fill still cannot replace it.
    const after = authRecordFromRow((await findKeyByToken(gw.gateway.pool, k.token))!);
    await l2.fill(k.token, after);
    await l2.fill(k.token, before);
    expect((await l2.get(k.token))?.models).toEqual(["mock-other"]);
  });

  it("while an event's L2 tombstone is being written, fills read Postgres, not the old L2 record", async () => {
    const k = await gw.newKey({ models: ["mock-gpt"] });
    const l1 = new L1Cache({ maxEntries: 100, ttlMs: 60_000, negativeTtlMs: 2_000 });
    const l2 = new L2Cache(redis, keys, 3600, () => {}, undefined, l2MacKey(gw.masterKey));
    // The tombstone travels over a slow link, so it is still in flight when the next request arrives.
    const slow = await startTcpProxy("127.0.0.1", 6379);
    slow.setLatency(150);
    const slowRedis = createRedis(`redis://127.0.0.1:${slow.port}`);
    await slowRedis.connect();
    const invalidator = new CacheInvalidator(l1, new L2Cache(slowRedis, keys, 3600, () => {}, undefined, l2MacKey(gw.masterKey)));
    const auth = new Authenticator(l1, l2, gw.gateway.db, { l2Pending: (h) => invalidator.l2Pending(h) });
    const old = authRecordFromRow((await findKeyByToken(gw.gateway.pool, k.token))!);
    await redis.del(keys.authRecord(k.token));
    await l2.fill(k.token, old); // L2 holds the record as it was before the change below
    const upd = await gw.admin("/key/update", { key: k.key, models: ["mock-other"] });
    await l2.fill(k.token, old); // pretend the writer's tombstone has not landed: L2 still says mock-gpt
    await redis.set(keys.authRecord(k.token), `${old.version}|${JSON.stringify(old)}`);

    const applying = invalidator.invalidate([k.token], upd.body.version); // this replica's event arrives
    const during = await auth.authenticate(k.key);
    expect(during.level).toBe("db");
    expect(during.record.models).toEqual(["mock-other"]);
    await applying;
    expect(invalidator.l2Pending(k.token)).toBe(false);
    // The fresh record filled during the wait survives its own version's tombstone.
    expect((await l2.get(k.token))?.models).toEqual(["mock-other"]);
    slowRedis.disconnect();
    await slow.close();
  });

  it("a delete's tombstone refuses a fill of the deleted row", async () => {
    const k = await gw.newKey();
    const { l2 } = freshAuthenticator();
    const row = authRecordFromRow((await findKeyByToken(gw.gateway.pool, k.token))!);
    await l2.fill(k.token, row);
    expect(await l2.get(k.token)).toBeDefined();
    expect((await gw.admin("/key/delete", { keys: [k.key] })).status).toBe(200);
    expect(await l2.get(k.token)).toBeUndefined();
    await l2.fill(k.token, row);
    expect(await l2.get(k.token)).toBeUndefined();
  });
});
