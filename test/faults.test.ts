import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ChangeContendedError } from "../src/errors/errors.js";
import { classifyFailure } from "../src/faults/classify.js";
import { Database } from "../src/store/database.js";
import { DEFAULT_TEST_CONFIG, startTestGateway, type TestGateway, type TestGatewayOptions } from "./helpers/gateway-fixture.js";
import { chatBody, openAIError } from "./helpers/http.js";
import { waitFor } from "./helpers/services.js";
import { startTcpProxy, viaProxy, type TcpProxy } from "./support/tcp-proxy.mjs";

describe("failures are classified in one place", () => {
  it.each([
    [Object.assign(new Error("Connection terminated unexpectedly"), {}), "connection"],
    [new Error("Client has encountered a connection error and is not queryable"), "connection"],
    [new Error("Connection terminated due to connection timeout"), "connection"],
    [Object.assign(new Error("read ECONNRESET"), { code: "ECONNRESET" }), "connection"],
    [Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED" }), "connection"],
    [Object.assign(new Error("write EPIPE"), { code: "EPIPE" }), "connection"],
    [Object.assign(new Error("x"), { code: "ETIMEDOUT" }), "timeout"],
    [Object.assign(new Error("terminating connection due to administrator command"), { code: "57P01" }), "connection"],
    [Object.assign(new Error("the database system is shutting down"), { code: "57P03" }), "connection"],
    [Object.assign(new Error("connection failure"), { code: "08006" }), "connection"],
    [Object.assign(new Error("cannot execute UPDATE in a read-only transaction"), { code: "25006" }), "connection"],
    [Object.assign(new Error("canceling statement due to statement timeout"), { code: "57014" }), "timeout"],
    [Object.assign(new Error("could not serialize access"), { code: "40001" }), "conflict"],
    [Object.assign(new Error("deadlock detected"), { code: "40P01" }), "conflict"],
    [new Error("Connection is closed."), "connection"],
    [new Error("Command timed out"), "timeout"],
    [Object.assign(new Error("Reached the max retries per request limit (which is 1)."), { name: "MaxRetriesPerRequestError" }), "connection"],
    [new Error("Error { kind: Closed, cause: None }"), "connection"],
    [Object.assign(new Error("duplicate key value violates unique constraint"), { code: "23505" }), "permanent"],
    [Object.assign(new Error('syntax error at or near "SELEC"'), { code: "42601" }), "permanent"],
    [new TypeError("cannot read properties of undefined"), "permanent"],
  ])("%s → %s", (err, kind) => {
    expect(classifyFailure(err)).toBe(kind);
  });
});

/**
 * An in-process gateway whose Postgres or Redis connections all go through a fault-injecting proxy; the
 * proxy is set back to pass before everything is closed.
 */
function gatewayBehindProxy(dependency: "postgres" | "redis", options: TestGatewayOptions = {}): { gw: TestGateway; proxy: TcpProxy } {
  const ctx = {} as { gw: TestGateway; proxy: TcpProxy };
  beforeAll(async () => {
    ctx.proxy = await startTcpProxy("127.0.0.1", dependency === "postgres" ? 5432 : 6379);
    const rewrite = (url: string) => viaProxy(url, ctx.proxy);
    ctx.gw = await startTestGateway(dependency === "postgres" ? { ...options, databaseUrl: rewrite } : { ...options, redisUrl: rewrite });
  });
  afterAll(async () => {
    ctx.proxy?.setMode("pass");
    await ctx.gw?.close();
    await ctx.proxy?.close();
  });
  return ctx;
}

describe("Postgres unreachable: fail static", () => {
  let gw: TestGateway;
  let pgProxy: TcpProxy;
  const behind = gatewayBehindProxy("postgres");
  beforeAll(() => {
    ({ gw, proxy: pgProxy } = behind);
  });

  it("cached keys keep working with their validity checked by the clock; unknown keys and admin writes get 503", async () => {
    const good = await gw.newKey();
    const blocked = await gw.newKey();
    const expiring = await gw.newKey({ duration: "2s" });
    const rotated = await gw.newKey();
    expect((await gw.admin("/key/block", { key: blocked.key })).status).toBe(200);
    const regen = await gw.admin(`/key/${rotated.key}/regenerate`, { grace_period: "2s" });
    expect(regen.status).toBe(200);
    const { rows } = await gw.gateway.pool.query("SELECT max(id)::int AS id FROM gh_key_events");
    await waitFor(() => gw.gateway.coherence.status().last_applied_event_id >= rows[0].id, { what: "events applied" });
    for (const k of [good.key, expiring.key, rotated.key, regen.body.key]) expect((await gw.call("/v1/chat/completions", { key: k, body: chatBody("mock-gpt") })).status).toBe(200);
    expect((await gw.call("/v1/chat/completions", { key: blocked.key, body: chatBody("mock-gpt") })).status).toBe(401);

    pgProxy.setMode("blackhole");
    pgProxy.cutAll(); // every pooled connection dies; new ones hang
    const started = Date.now();
    const during = async (key: string) => gw.call("/v1/chat/completions", { key, body: chatBody("mock-gpt") });

    // Cached keys: served (fail static). No 5xx for them, ever.
    await waitFor(async () => !gw.gateway.coherence.isFresh(), { timeoutMs: 5_000, what: "the replica to notice it is cut off" });
    expect((await during(good.key)).status).toBe(200);
    expect((await during(regen.body.key)).status).toBe(200);
    expect((await during(blocked.key)).status).toBe(401);
    // Validity is still the clock's: the expiring key and the old key's grace run out during the outage.
    await waitFor(async () => (await during(expiring.key)).status === 401, { timeoutMs: 5_000, what: "expiry while Postgres is down" });
    await waitFor(async () => (await during(rotated.key)).status === 401, { timeoutMs: 5_000, what: "revoke_at while Postgres is down" });

    // Unknown keys: 503 with Retry-After, never 401 and never 200.
    const unknown = await during("sk-never-seen-by-anyone-0001");
    expect(unknown.status).toBe(503);
    expect(Number(unknown.headers.get("retry-after"))).toBeGreaterThan(0);
    expect(openAIError(unknown.body).type).toBe("service_unavailable_error");

    // Admin writes: 503 with Retry-After, and fast once the breaker is open.
    await waitFor(() => gw.gateway.breakers.postgres.state === "open", { timeoutMs: 15_000, what: "the Postgres breaker to open" });
    const t0 = Date.now();
    const write = await gw.admin("/key/generate", {});
    expect(write.status).toBe(503);
    expect(write.headers.get("retry-after")).toBeTruthy();
    expect(Date.now() - t0).toBeLessThan(500);
    expect((await gw.admin(`/key/info?key=${good.token}`)).status).toBe(503);

    const ready = await gw.call("/health/readiness");
    expect(ready.status).toBe(200);
    expect(ready.body).toMatchObject({ status: "degraded", breakers: { postgres: "open" } });
    expect((await during(good.key)).status).toBe(200);
    expect(Date.now() - started).toBeLessThan(30_000);
  }, 45_000);

  it("when Postgres returns, the breaker closes, the replica catches up and trusts L1 again", async () => {
    pgProxy.setMode("pass");
    const k = await waitFor(
      async () => {
        const res = await gw.admin("/key/generate", {});
        return res.status === 200 ? res.body : undefined;
      },
      { timeoutMs: 15_000, intervalMs: 200, what: "admin writes to work again" },
    );
    await waitFor(() => gw.gateway.breakers.postgres.state === "closed" && gw.gateway.coherence.isFresh(), { timeoutMs: 10_000, what: "breaker closed and caches fresh" });
    expect((await gw.call("/v1/chat/completions", { key: k.key, body: chatBody("mock-gpt") })).status).toBe(200);
    expect((await gw.call("/health/readiness")).body.status).toBe("healthy");
  }, 30_000);
});

describe("a COMMIT whose outcome is unknown is resolved before answering", () => {
  let gw: TestGateway;
  let pgProxy: TcpProxy;
  const behind = gatewayBehindProxy("postgres");
  beforeAll(() => {
    ({ gw, proxy: pgProxy } = behind);
  });

  async function rotations(oldToken: string): Promise<number> {
    const { rows } = await gw.gateway.pool.query("SELECT count(*)::int AS n FROM gh_deprecated_keys WHERE token = $1", [oldToken]);
    return rows[0].n;
  }

  it("the connection dies after the server received COMMIT: the change landed, the caller gets 200, nothing runs twice", async () => {
    const k = await gw.newKey();
    const verifiedBefore = gw.gateway.db.counters.commitsVerified;
    const sprung = pgProxy.cutOnce("COMMIT", { forward: true });
    const res = await gw.admin(`/key/${k.key}/regenerate`, { grace_period: "1h" });
    await sprung;
    expect(res.status, res.text).toBe(200);
    expect(gw.gateway.db.counters.commitsVerified).toBe(verifiedBefore + 1);
    expect(await rotations(k.token)).toBe(1);
    expect((await gw.call("/v1/chat/completions", { key: res.body.key, body: chatBody("mock-gpt") })).status).toBe(200);
    expect((await gw.call("/v1/chat/completions", { key: k.key, body: chatBody("mock-gpt") })).status).toBe(200);
  });

  it("the connection dies before COMMIT reached the server: it is run again, once", async () => {
    const k = await gw.newKey();
    const rerunBefore = gw.gateway.db.counters.commitsRerun;
    const sprung = pgProxy.cutOnce("COMMIT", { forward: false });
    const res = await gw.admin(`/key/${k.key}/regenerate`, { grace_period: "1h" });
    await sprung;
    expect(res.status, res.text).toBe(200);
    expect(gw.gateway.db.counters.commitsRerun).toBe(rerunBefore + 1);
    expect(await rotations(k.token)).toBe(1);
    const { rows } = await gw.gateway.pool.query("SELECT token FROM gh_keys WHERE key_id = (SELECT key_id FROM gh_deprecated_keys WHERE token = $1)", [k.token]);
    expect(rows).toEqual([{ token: res.body.token }]);
  });

  it("a transaction cut before COMMIT (mid-work) is retried and lands once", async () => {
    const k = await gw.newKey({ max_budget: 1 });
    const sprung = pgProxy.cutOnce("gh_deprecated_keys", { forward: false });
    const res = await gw.admin("/key/update", { key: k.key, max_budget: 2 });
    await sprung;
    expect(res.status, res.text).toBe(200);
    expect((await gw.admin(`/key/info?key=${k.token}`)).body.info.max_budget).toBe(2);
    expect(gw.gateway.db.counters.retries).toBeGreaterThan(0);
  });

  it("a transaction that meets a deadlock every time is retried until its deadline, then refused with 503 change_contended, never a 500", async () => {
    const db = new Database(gw.gateway.pool, gw.gateway.db.breaker, 300);
    let runs = 0;
    const failure = await db
      .transaction(async (tx) => {
        runs++;
        // The server itself reports the deadlock, as Postgres does when it breaks one.
        await tx.query("DO $$ BEGIN RAISE EXCEPTION 'deadlock detected' USING ERRCODE = '40P01'; END $$");
      })
      .catch((err: unknown) => err);
    expect(failure).toBeInstanceOf(ChangeContendedError);
    expect((failure as ChangeContendedError).toBody().error.code).toBe("change_contended");
    expect((failure as ChangeContendedError).status).toBe(503);
    expect(runs).toBeGreaterThan(1);
    expect(db.counters.conflicts).toBe(runs);
  });
});

describe("Redis unreachable: L2 skipped, locks fall back, the gateway keeps serving", () => {
  let gw: TestGateway;
  let redisProxy: TcpProxy;
  const behind = gatewayBehindProxy("redis");
  beforeAll(() => {
    ({ gw, proxy: redisProxy } = behind);
  });

  it("keeps authenticating, generating and regenerating while Redis is blackholed, and uses it again after", async () => {
    const before = await gw.newKey();
    redisProxy.setMode("blackhole");
    redisProxy.cutAll();
    expect((await gw.call("/v1/chat/completions", { key: before.key, body: chatBody("mock-gpt") })).status).toBe(200);
    const created = await gw.admin("/key/generate", {});
    expect(created.status).toBe(200);
    expect((await gw.call("/v1/chat/completions", { key: created.body.key, body: chatBody("mock-gpt") })).status).toBe(200);
    const regen = await gw.admin(`/key/${created.body.key}/regenerate`, { grace_period: "1h" });
    expect(regen.status).toBe(200);
    expect((await gw.call("/v1/chat/completions", { key: regen.body.key, body: chatBody("mock-gpt") })).status).toBe(200);
    await waitFor(() => gw.gateway.breakers.redis.state === "open", { timeoutMs: 15_000, what: "the Redis breaker to open" });
    // With the breaker open, nothing waits on Redis any more.
    const t0 = Date.now();
    for (let i = 0; i < 20; i++) {
      const fresh = await gw.admin("/key/generate", {});
      expect((await gw.call("/v1/chat/completions", { key: fresh.body.key, body: chatBody("mock-gpt") })).status).toBe(200);
    }
    expect(Date.now() - t0).toBeLessThan(2_000);
    expect((await gw.call("/health/readiness")).body).toMatchObject({ status: "degraded", breakers: { redis: "open" } });

    redisProxy.setMode("pass");
    // Traffic drives the half-open probe: each new key's look-up tries L2.
    await waitFor(
      async () => {
        const fresh = await gw.admin("/key/generate", {});
        await gw.call("/v1/chat/completions", { key: fresh.body.key, body: chatBody("mock-gpt") });
        return gw.gateway.breakers.redis.state === "closed" && (await gw.call("/health/readiness")).body.status === "healthy";
      },
      { timeoutMs: 20_000, intervalMs: 200, what: "Redis to be used again" },
    );
  }, 60_000);

  it("a replica starts while Redis is down", async () => {
    const down = await startTestGateway({ redisUrl: () => "redis://127.0.0.1:1" });
    try {
      const k = await down.newKey();
      expect((await down.call("/v1/chat/completions", { key: k.key, body: chatBody("mock-gpt") })).status).toBe(200);
      expect((await down.admin(`/key/${k.key}/regenerate`, {})).status).toBe(200);
    } finally {
      await down.close();
    }
  });
});

/**
 * With Redis (the live ledger) unreachable, keys with limits meet the configured policy;
 * keys without limits are served either way, and spend still reaches the durable ledger.
 */
describe("Redis unreachable: rate limits degrade per the configured policy", () => {
  const PRICED: TestGatewayOptions["config"] = {
    model_list: [...DEFAULT_TEST_CONFIG.model_list, { model_name: "priced", litellm_params: { model: "mock/priced", input_cost_per_token: 0.001, output_cost_per_token: 0.001 } }],
  };
  const blackhole = async (gw: TestGateway, proxy: TcpProxy) => {
    proxy.setMode("blackhole");
    proxy.cutAll();
    // Requests drive the breaker open; until then each waits at most Redis's command timeout.
    await waitFor(
      async () => {
        await gw.call("/v1/chat/completions", { key: (await gw.newKey({ rpm_limit: 1_000 })).key, body: chatBody("mock-gpt") });
        return gw.gateway.breakers.redis.state === "open";
      },
      { timeoutMs: 20_000, intervalMs: 50, what: "the Redis breaker to open" },
    );
  };

  describe("fail_open_local: each replica enforces its share of every limit", () => {
    let gw: TestGateway;
    let proxy: TcpProxy;
    const behind = gatewayBehindProxy("redis", {
      config: { ...PRICED, gatehouse_settings: { limits: { redis_unavailable: "fail_open_local", replica_count: 2, flush_interval_ms: 100 } } },
    });
    beforeAll(() => {
      ({ gw, proxy } = behind);
    });

    it("rpm_limit 10 on 2 replicas: this one allows 5 while Redis is down; spend still reaches Postgres", async () => {
      const limited = await gw.newKey({ rpm_limit: 10, max_budget: 100 });
      const free = await gw.newKey();
      await blackhole(gw, proxy);
      const statuses: number[] = [];
      let charged = 0;
      for (let i = 0; i < 8; i++) {
        const res = await gw.call("/v1/chat/completions", { key: limited.key, body: chatBody("priced") });
        statuses.push(res.status);
        if (res.status === 200) charged += (res.body.usage.prompt_tokens + res.body.usage.completion_tokens) * 0.001;
      }
      expect(statuses.filter((s) => s === 200)).toHaveLength(5);
      expect(statuses.slice(5)).toEqual([429, 429, 429]);
      for (let i = 0; i < 8; i++) expect((await gw.call("/v1/chat/completions", { key: free.key, body: chatBody("mock-gpt") })).status).toBe(200);

      // Twice: the first call may join a periodic flush whose batch formed before the last charge.
      await gw.gateway.spendLedger.flush();
      await gw.gateway.spendLedger.flush();
      const { rows } = await gw.gateway.pool.query("SELECT spend FROM gh_keys WHERE token = $1", [limited.token]);
      expect(rows[0].spend).toBeCloseTo(charged, 12);
      proxy.setMode("pass");
    }, 60_000);
  });

  describe("fail_closed: keys with limits get 503 while Redis is down", () => {
    let gw: TestGateway;
    let proxy: TcpProxy;
    const behind = gatewayBehindProxy("redis", { config: { ...PRICED, gatehouse_settings: { limits: { redis_unavailable: "fail_closed" } } } });
    beforeAll(() => {
      ({ gw, proxy } = behind);
    });

    it("503 with Retry-After for a limited key, 200 for a key without limits, and limits work again after", async () => {
      const limited = await gw.newKey({ rpm_limit: 10 });
      const free = await gw.newKey();
      expect((await gw.call("/v1/chat/completions", { key: limited.key, body: chatBody("mock-gpt") })).status).toBe(200);
      proxy.setMode("blackhole");
      proxy.cutAll();
      const refused = await gw.call("/v1/chat/completions", { key: limited.key, body: chatBody("mock-gpt") });
      expect(refused.status).toBe(503);
      expect(openAIError(refused.body).code).toBe("limits_unavailable");
      expect(refused.headers.get("retry-after")).toBeTruthy();
      expect((await gw.call("/v1/chat/completions", { key: free.key, body: chatBody("mock-gpt") })).status).toBe(200);

      proxy.setMode("pass");
      await waitFor(async () => (await gw.call("/v1/chat/completions", { key: limited.key, body: chatBody("mock-gpt") })).status === 200, {
        timeoutMs: 20_000,
        intervalMs: 200,
        what: "limits to be checked in Redis again",
      });
    }, 60_000);
  });
});
