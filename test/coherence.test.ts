import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Authenticator } from "../src/auth/authenticator.js";
import { L1Cache } from "../src/auth/l1-cache.js";
import { L2Cache, l2MacKey } from "../src/auth/l2-cache.js";
import { CacheInvalidator } from "../src/coherence/cache-invalidator.js";
import { DbClock } from "../src/coherence/db-clock.js";
import { Coherence } from "../src/coherence/coherence.js";
import { createLogger } from "../src/logger.js";
import { createRedis, type GatehouseRedis } from "../src/redis/client.js";
import { createPool } from "../src/store/db.js";
import { pruneEvents } from "../src/store/event-store.js";
import { Sweeper } from "../src/upkeep/sweeper.js";
import { Database } from "../src/store/database.js";
import { DependencyBreaker, POSTGRES_BREAKER_OPTIONS } from "../src/faults/breaker.js";
import { LogCapture, startTestGateway, type TestGateway } from "./helpers/gateway-fixture.js";
import { REDIS_URL, waitFor } from "./helpers/services.js";
import { startTcpProxy, viaProxy, type TcpProxy } from "./support/tcp-proxy.mjs";

let gw: TestGateway;
let redis: GatehouseRedis;
let proxy: TcpProxy;
const logs = new LogCapture();
const logger = createLogger({ destination: logs, level: "debug" });

beforeAll(async () => {
  gw = await startTestGateway();
  redis = createRedis(REDIS_URL);
  await redis.connect();
  const url = new URL(gw.db.url);
  proxy = await startTcpProxy(url.hostname, Number(url.port || 5432));
});
afterAll(async () => {
  redis?.disconnect();
  await proxy?.close();
  await gw?.close();
});

/** A second replica's coherence machinery, in-process, with its database traffic through `proxy`. */
function replicaThroughProxy(options: { heartbeatIntervalMs: number; staleAfterMs: number; listenThroughProxy: boolean; poolThroughProxy: boolean; onHeartbeat?: () => void }) {
  const l1 = new L1Cache({ maxEntries: 1000, ttlMs: 600_000, negativeTtlMs: 2_000 });
  const l2 = new L2Cache(redis, gw.gateway.redisKeys, 3600, () => {}, undefined, l2MacKey(gw.masterKey));
  const viaUrl = viaProxy(gw.db.url, proxy);
  const pool = createPool(options.poolThroughProxy ? viaUrl : gw.db.url, { max: 2, statementTimeoutMs: 500 });
  const db = new Database(pool, new DependencyBreaker("postgres", logger, POSTGRES_BREAKER_OPTIONS));
  const coherence = new Coherence({
    db,
    listenUrl: options.listenThroughProxy ? viaUrl : gw.db.url,
    invalidator: new CacheInvalidator(l1, l2),
    logger,
    replicaId: `test-${Math.random().toString(16).slice(2, 8)}`,
    heartbeatIntervalMs: options.heartbeatIntervalMs,
    staleAfterMs: options.staleAfterMs,
    clock: new DbClock(),
    onHeartbeat: options.onHeartbeat,
  });
  // Look-ups go straight to Postgres, so we can see L1 being bypassed rather than failing.
  const authenticator = new Authenticator(l1, l2, gw.gateway.db, { l1Trusted: () => coherence.isFresh() });
  return {
    l1,
    coherence,
    authenticator,
    pool,
    async close() {
      await coherence.stop();
      await pool.end();
    },
  };
}

/**
 * Puts a new key's record in the replica's L1. The key's own "generate" event evicts it when it arrives
 * (and discards a fill in flight, docs/coherence.md #5), so wait for that event to be applied first.
 */
async function warm(r: ReturnType<typeof replicaThroughProxy>, key: string, token: string) {
  const { rows } = await gw.gateway.pool.query("SELECT max(id)::int AS id FROM gh_key_events");
  await waitFor(() => r.coherence.status().last_applied_event_id >= rows[0].id, { what: "the replica to apply the generate event" });
  await waitFor(
    async () => {
      await r.authenticator.authenticate(key);
      return r.l1.get(token)?.record ? true : undefined;
    },
    { what: "the record to land in L1" },
  );
}

describe("catch-up after a gap (docs/coherence.md #6)", () => {
  it("a replica whose missed events were pruned drops its whole L1 when it reconnects", async () => {
    const r = replicaThroughProxy({ heartbeatIntervalMs: 60_000, staleAfterMs: 120_000, listenThroughProxy: true, poolThroughProxy: false });
    try {
      await r.coherence.start();
      const k = await gw.newKey();
      await warm(r, k.key, k.token);

      proxy.setMode("blackhole"); // the replica hears nothing from now on
      const other = await gw.newKey();
      expect((await gw.admin("/key/update", { key: other.key, max_budget: 1 })).status).toBe(200);
      expect(await pruneEvents(gw.gateway.pool, 0)).toBeGreaterThan(0); // ...and the events are gone
      expect(r.l1.get(k.token)?.record).toBeTruthy();

      proxy.setMode("pass");
      proxy.cutAll(); // the listener reconnects and catches up
      await waitFor(() => r.coherence.counters.l1Drops > 0, { timeoutMs: 15_000, what: "the L1 drop" });
      expect(r.l1.get(k.token)).toBeUndefined();
      expect(r.l1.size).toBe(0);
    } finally {
      proxy.setMode("pass");
      await r.close();
    }
  });

  it("a replica that cannot reach Postgres stops trusting L1 after the bound, and trusts it again once it caught up", async () => {
    const r = replicaThroughProxy({ heartbeatIntervalMs: 100, staleAfterMs: 400, listenThroughProxy: true, poolThroughProxy: true });
    try {
      await r.coherence.start();
      const k = await gw.newKey();
      await warm(r, k.key, k.token);
      expect((await r.authenticator.authenticate(k.key)).level).toBe("l1");

      proxy.setMode("blackhole");
      await waitFor(() => !r.coherence.isFresh(), { timeoutMs: 3_000, what: "the replica to go stale" });
      // L1 still holds the record, but it is not served from there.
      expect(r.l1.get(k.token)?.record).toBeTruthy();
      expect((await r.authenticator.authenticate(k.key)).level).not.toBe("l1");

      proxy.setMode("pass");
      proxy.cutAll();
      await waitFor(() => r.coherence.isFresh(), { timeoutMs: 15_000, what: "the replica to be fresh again" });
      expect((await r.authenticator.authenticate(k.key)).level).toBe("l1");
    } finally {
      proxy.setMode("pass");
      await r.close();
    }
  });
});

describe("the heartbeat", () => {
  it("goes on catching up when a task it runs throws", async () => {
    let beats = 0;
    const onHeartbeat = () => {
      beats++;
      throw new Error("a heartbeat task's bug");
    };
    const r = replicaThroughProxy({ heartbeatIntervalMs: 100, staleAfterMs: 400, listenThroughProxy: false, poolThroughProxy: false, onHeartbeat });
    try {
      await r.coherence.start();
      await waitFor(() => beats >= 3, { timeoutMs: 3_000, what: "three heartbeats" });
      // Only the heartbeat catches up here (no notification comes): fresh well past the bound means it went on.
      const until = performance.now() + 1_000;
      await waitFor(() => performance.now() >= until || !r.coherence.isFresh(), { timeoutMs: 3_000, what: "a second to pass" });
      expect(r.coherence.isFresh()).toBe(true);
      expect(beats).toBeGreaterThanOrEqual(8);
    } finally {
      await r.close();
    }
  });
});

describe("the sweeper", () => {
  it("removes deprecated keys past revoke_at once, even when every replica sweeps at the same time", async () => {
    const keys = await Promise.all(Array.from({ length: 5 }, () => gw.newKey()));
    for (const k of keys) expect((await gw.admin(`/key/${k.key}/regenerate`, { grace_period: "1s" })).status).toBe(200);
    await waitFor(async () => (await gw.gateway.pool.query("SELECT count(*)::int AS n FROM gh_deprecated_keys WHERE revoke_at < now()")).rows[0].n === 5, { timeoutMs: 3_000 });
    const eventsBefore = (await gw.gateway.pool.query("SELECT count(*)::int AS n FROM gh_key_events WHERE kind = 'expiry'")).rows[0].n;
    const sweepers = Array.from(
      { length: 4 },
      () =>
        new Sweeper({
          db: gw.gateway.db,
          events: gw.gateway.coherence,
          logger,
          intervalMs: 60_000,
          idempotencyRetentionMs: 86_400_000,
          eventRetentionMs: 3_600_000,
          // As a replica wires it: a budget period this sweep resets has its live ledger rebuilt.
          onBudgetReset: (ledger, generation) => gw.gateway.limits.afterReset(ledger, generation),
        }),
    );
    const results = await Promise.all(sweepers.map((s) => s.sweepOnce()));
    expect(results.reduce((n, r) => n + r.deprecatedRemoved, 0)).toBe(5);
    const { rows } = await gw.gateway.pool.query("SELECT kind, tokens FROM gh_key_events WHERE kind = 'expiry' ORDER BY id");
    expect(rows.length - eventsBefore).toBeGreaterThanOrEqual(1);
    const swept = rows.slice(eventsBefore).flatMap((r: { tokens: string[] }) => r.tokens);
    expect(swept.sort()).toEqual(keys.map((k) => k.token).sort());
    expect((await sweepers[0]!.sweepOnce()).deprecatedRemoved).toBe(0);
  });
});
