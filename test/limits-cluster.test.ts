import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ConfigFile } from "../src/config/settings.js";
import { startRedisServer, type RedisServer } from "./helpers/redis-server.js";
import { startCluster, type Cluster, type Replica } from "./helpers/cluster.js";
import { startFakeUpstream, type FakeUpstream } from "./helpers/fake-upstream.js";
import { api, chatBody, openAIError } from "./helpers/http.js";
import { costOf, INPUT_COST, OUTPUT_COST, pricedModel } from "./helpers/prices.js";
import { REDIS_URL, waitFor } from "./helpers/services.js";

/**
 * Every limit holds across three real replica processes sharing one Postgres and one Redis.
 * Prices are powers of two, so sums of costs are exact and compare with toBe.
 */
const RESERVATION_TTL_MS = 2_000;
const PREFETCH_MAX_AGE_MS = 2_000; // the default; a burst test must see every replica hold one at once

function config(upstreamUrl: string): ConfigFile {
  return {
    model_list: [
      pricedModel("priced"),
      { model_name: "free", litellm_params: { model: "mock/free" } },
      { model_name: "slow", litellm_params: { model: "openai/slow", api_base: upstreamUrl } },
      // 150 ms in flight: concurrent requests really overlap, so the budget check races the charges.
      { model_name: "delayed", litellm_params: { model: "openai/delay-150", api_base: upstreamUrl, input_cost_per_token: INPUT_COST, output_cost_per_token: OUTPUT_COST } },
    ],
    gatehouse_settings: { limits: { flush_interval_ms: 100, reservation_ttl_ms: RESERVATION_TTL_MS, prefetch_max_age_ms: PREFETCH_MAX_AGE_MS } },
  };
}

type Result = { status: number; body: any; replica: string };

function chat(r: Replica, key: string, body: Record<string, unknown>): Promise<Result> {
  return api(r.url, "/v1/chat/completions", { key, body }).then((res) => ({ status: res.status, body: res.body, replica: r.name }));
}

async function durableSpend(cluster: Cluster, token: string): Promise<number> {
  const { rows } = await cluster.pool.query("SELECT spend FROM gh_keys WHERE token = $1", [token]);
  return rows[0].spend;
}

let upstream: FakeUpstream;
let cluster: Cluster;
let A: Replica, B: Replica, C: Replica;

beforeAll(async () => {
  upstream = await startFakeUpstream();
  upstream.slowMs = 30_000;
  cluster = await startCluster({ config: config(upstream.url) });
  [A, B, C] = cluster.replicas as [Replica, Replica, Replica];
}, 60_000);
afterAll(async () => {
  await cluster?.close();
  await upstream?.close();
});

async function newKey(fields: Record<string, unknown> = {}) {
  const res = await A.admin("/key/generate", fields);
  expect(res.status).toBe(200);
  await cluster.settle();
  return res.body as { key: string; token: string; key_id: string };
}

describe("limits hold across three replicas", () => {
  it("a budget worth 10 requests allows at most 10 (+1 in flight) under concurrent bursts; then every replica refuses; spend = the sum of actual costs", async () => {
    const body = chatBody("delayed", { max_tokens: 1 });
    const probeKey = await newKey();
    const probe = await chat(A, probeKey.key, body);
    expect(probe.status).toBe(200);
    const perRequest = costOf(probe.body.usage);
    const k = await newKey({ max_budget: 10 * perRequest });

    const admitted: Result[] = [];
    const refusedBy = new Set<string>();
    for (let burst = 0; burst < 60 && refusedBy.size < 3; burst++) {
      const results = await Promise.all(Array.from({ length: 30 }, (_, i) => chat([A, B, C][i % 3]!, k.key, body)));
      for (const r of results) {
        if (r.status === 200) admitted.push(r);
        else if (r.status === 400) refusedBy.add(r.replica);
        else expect(r.status, JSON.stringify(r.body)).toBe(429); // budget held by requests in flight: retry
      }
    }
    expect(admitted.length).toBeGreaterThanOrEqual(10);
    expect(admitted.length).toBeLessThanOrEqual(11);
    for (const r of [A, B, C]) {
      const res = await chat(r, k.key, body);
      expect(res.status).toBe(400);
      expect(openAIError(res.body)).toMatchObject({ type: "budget_exceeded", code: "budget_exceeded" });
    }

    const charged = admitted.reduce((sum, r) => sum + costOf(r.body.usage), 0);
    await waitFor(async () => (await durableSpend(cluster, k.token)) === charged, { what: "the durable spend to equal the sum of actual costs" });
    expect((await B.admin(`/key/info?key=${k.key}`)).body.info.spend).toBe(charged);
  }, 60_000);

  it("rpm_limit 20 under 60 concurrent requests across 3 replicas allows 20; the rest get 429 with Retry-After", async () => {
    const k = await newKey({ rpm_limit: 20 });
    const results = await Promise.all(Array.from({ length: 60 }, (_, i) => api([A, B, C][i % 3]!.url, "/v1/chat/completions", { key: k.key, body: chatBody("free") })));
    const ok = results.filter((r) => r.status === 200).length;
    expect(ok).toBeGreaterThanOrEqual(19);
    expect(ok).toBeLessThanOrEqual(21);
    const refused = results.filter((r) => r.status !== 200);
    expect(refused.every((r) => r.status === 429 && Number(r.headers.get("retry-after")) >= 1 && r.headers.get("x-ratelimit-remaining-requests") === "0")).toBe(true);
  });

  it("with admissions prefetched on every replica, rpm stays exact: a burst never gets more than the limit, and what was held ready comes back", async () => {
    const LIMIT = 200; // room for 64 more: every replica prefetches while the key is fresh
    const k = await newKey({ rpm_limit: LIMIT });
    const rpmLog = (await cluster.redisKeys()).limits(k.key_id).requests;
    const redis = new Redis(REDIS_URL);
    try {
      let served = 0;
      const serve = async (r: Replica) => {
        const res = await api(r.url, "/v1/chat/completions", { key: k.key, body: chatBody("free") });
        expect([200, 429]).toContain(res.status);
        if (res.status === 200) served++;
        return res.status;
      };
      // A few sequential requests per replica, then each holds an admission ready: the log has one
      // entry per request and one per replica for what is held.
      for (const r of [A, B, C]) for (let i = 0; i < 3; i++) await serve(r);
      expect(served).toBe(9);
      await waitFor(async () => (await redis.zcard(rpmLog)) === served + 3, { what: "every replica to hold one admission ready" });

      // A burst twice the limit over the three replicas: never more than the limit, whoever holds what.
      await Promise.all(Array.from({ length: 2 * LIMIT }, (_, i) => serve([A, B, C][i % 3]!)));
      expect(served).toBeLessThanOrEqual(LIMIT);
      expect(served).toBeGreaterThanOrEqual(LIMIT - 3); // at most one held ready per replica
      // Unused admissions are given back after prefetch_max_age_ms: the log then counts requests only,
      // and the last of the limit can be used.
      await waitFor(async () => (await redis.zcard(rpmLog)) === served, { what: "held admissions to be given back" });
      await waitFor(async () => (await serve([A, B, C][served % 3]!)) === 429, { what: "the limit to be used up", timeoutMs: 10_000 });
      expect(served).toBe(LIMIT);
      expect(await redis.zcard(rpmLog)).toBe(LIMIT);
    } finally {
      redis.disconnect();
    }
  });

  it("streaming requests are charged on whichever replica served them", async () => {
    const k = await newKey({ max_budget: 1_000 });
    let charged = 0;
    for (const r of [A, B, C]) {
      const res = await fetch(`${r.url}/v1/chat/completions`, {
        method: "POST",
        headers: { authorization: `Bearer ${k.key}`, "content-type": "application/json" },
        body: JSON.stringify(chatBody("priced", { stream: true, stream_options: { include_usage: true } })),
      });
      const frames = (await res.text()).split("\n\n").filter((f) => f.startsWith("data: {"));
      charged += costOf(JSON.parse(frames.at(-1)!.slice(6)).usage);
    }
    await waitFor(async () => (await durableSpend(cluster, k.token)) === charged, { what: "streamed spend to be recorded" });
  });

  it("a rotated key within its grace and the new key draw on one rate limit and one budget", async () => {
    const k = await newKey({ rpm_limit: 4, max_budget: 1_000 });
    expect((await chat(A, k.key, chatBody("priced"))).status).toBe(200);
    expect((await chat(B, k.key, chatBody("priced"))).status).toBe(200);
    const regen = await B.admin(`/key/${k.key}/regenerate`, { grace_period: "1h" });
    expect(regen.status).toBe(200);
    await cluster.settle();
    expect((await chat(C, regen.body.key, chatBody("priced"))).status).toBe(200);
    expect((await chat(A, k.key, chatBody("priced"))).status).toBe(200);
    expect((await chat(B, regen.body.key, chatBody("priced"))).status).toBe(429);
    expect((await chat(C, k.key, chatBody("priced"))).status).toBe(429);
    const old = await A.admin(`/key/info?key=${k.key}`);
    const fresh = await A.admin(`/key/info?key=${regen.body.key}`);
    expect(old.body.info.spend).toBe(fresh.body.info.spend);
    expect(fresh.body.info.spend).toBeGreaterThan(0);
  });

  it("/key/update of limits is enforced on every replica within the staleness bound", async () => {
    const k = await newKey();
    for (const r of [A, B, C]) expect((await chat(r, k.key, chatBody("free"))).status).toBe(200);
    expect((await A.admin("/key/update", { key: k.key, rpm_limit: 1 })).status).toBe(200);
    const updatedAt = Date.now();
    for (const r of [B, C]) {
      await waitFor(async () => (await chat(r, k.key, chatBody("free"))).status === 429, { timeoutMs: 2_000, intervalMs: 10, what: `${r.name} to enforce the new rpm_limit` });
    }
    expect(Date.now() - updatedAt).toBeLessThan(2_000);
  });

  it("a replica SIGKILLed mid-request leaks no reservation past its expiry", async () => {
    const k = await newKey({ max_parallel_requests: 1 });
    const doomed = await cluster.addReplica("D");
    await cluster.settle();
    void chat(doomed, k.key, chatBody("slow")).catch(() => undefined); // answers in 30 s: killed before
    const redis = new Redis(REDIS_URL);
    try {
      const names = (await cluster.redisKeys()).limits(k.key_id);
      const inflight = names.inflight;
      await waitFor(async () => (await redis.zcard(inflight)) === 1, { what: "the reservation to be held" });
      const [held] = await redis.zrange(inflight, 0, 0);
      await doomed.stop("SIGKILL");
      const killedAt = Date.now();
      const blocked = await chat(A, k.key, chatBody("free"));
      expect(blocked.status).toBe(429);
      expect(openAIError(blocked.body).code).toBe("parallel_request_limit_exceeded");
      await waitFor(async () => (await chat(B, k.key, chatBody("free"))).status === 200, {
        timeoutMs: RESERVATION_TTL_MS + 3_000,
        intervalMs: 100,
        what: "the dead replica's reservation to expire",
      });
      expect(Date.now() - killedAt).toBeLessThan(RESERVATION_TTL_MS + 3_000);
      // The dead replica's reservation is gone, and with it the cost it held.
      expect(await redis.zscore(inflight, held!)).toBeNull();
      expect(await redis.hget(names.reserved, held!)).toBeNull();
    } finally {
      redis.disconnect();
    }
  }, 30_000);
});

describe("a Redis restart mid-load", () => {
  let redisServer: RedisServer;
  let own: Cluster;
  beforeAll(async () => {
    redisServer = await startRedisServer();
    own = await startCluster({ config: config(upstream.url), env: { REDIS_URL: redisServer.url } });
  }, 60_000);
  afterAll(async () => {
    await own?.close();
    await redisServer?.stop();
  });

  it("loses no settled spend: the durable ledger gets every charge, whatever Redis forgot", async () => {
    const res = await own.replicas[0]!.admin("/key/generate", { max_budget: 1_000_000, rpm_limit: 1_000_000 });
    const k = res.body;
    await own.settle();
    let stop = false;
    let charged = 0;
    let served = 0;
    const loops = own.replicas.map(async (r) => {
      while (!stop) {
        const out = await chat(r, k.key, chatBody("priced"));
        if (out.status === 200) {
          charged += costOf(out.body.usage);
          served++;
        }
      }
    });
    await waitFor(() => served >= 30, { what: "load to run" });
    await redisServer.restart(500);
    const afterRestart = served;
    await waitFor(() => served >= afterRestart + 30, { timeoutMs: 20_000, what: "load to go on after the restart" });
    stop = true;
    await Promise.all(loops);
    await waitFor(async () => (await durableSpend(own, k.token)) === charged, { timeoutMs: 10_000, what: "durable spend to equal every served request's cost" });
  }, 60_000);
});
